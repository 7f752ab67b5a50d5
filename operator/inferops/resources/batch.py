"""BatchService -> one Indexed Job: the model as a native sidecar, the worker as main."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inferops.api.application import AppVersion
from inferops.api.batch import BatchServiceSpec
from inferops.api.catalog import Catalog
from inferops.api.names import KIND_BATCH
from inferops.contract.batch_worker import (
    CONFIG_ENV,
    WORKERS_ENV,
    config_to_env_json,
    worker_config,
)
from inferops.resources.labels import LABEL_COMPONENT, OwnerInputs, metadata, owner_labels
from inferops.resources.security import container_security_context, pod_security_context
from inferops.resources.workload import (
    merge_env,
    model_container,
    model_fetch,
    placement,
    storage_env,
    without_userinfo,
)

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
BACKOFF_PER_INDEX = 2


def task_id(obj: Mapping[str, Any]) -> str:
    """The batch task ID: unique per BatchService and stable across reconciles."""
    return str(obj["metadata"]["uid"]).replace("-", "")[:12]


@dataclass(frozen=True)
class BatchInputs(OwnerInputs):
    obj: Mapping[str, Any]
    spec: BatchServiceSpec
    version: AppVersion
    catalog: Catalog

    def worker_config_json(self) -> str:
        """The config every worker reads from CONFIG_ENV; the model is its sidecar."""
        config = worker_config(
            without_credentials(self.spec),
            self.version,
            f"http://127.0.0.1:{self.version.port}",
            task_id(self.obj),
            0,
            self.spec.compute_nodes,
            self.catalog.batch,
        )
        return config_to_env_json(config)


def without_credentials(spec: BatchServiceSpec) -> BatchServiceSpec:
    """The spec with user:password@ cut out of storage.endpoint (validation refuses it; the
    worker config is a plain env value, so it must never carry one)."""
    storage = spec.storage
    if storage is None or not storage.endpoint:
        return spec
    endpoint = without_userinfo(storage.endpoint)
    return spec.model_copy(update={"storage": storage.model_copy(update={"endpoint": endpoint})})


def batch_job(inputs: BatchInputs) -> dict[str, Any]:
    spec = inputs.spec
    flavor = inputs.catalog.flavor(spec.specification)
    if flavor is None:
        raise ValueError(f"unknown flavor {spec.specification!r}")
    labels = {**owner_labels(KIND_BATCH, inputs.name), LABEL_COMPONENT: "batch"}
    if spec.queue_name:
        labels[QUEUE_LABEL] = spec.queue_name
    model = model_container(
        inputs.version, merge_env(inputs.version.env, spec.env), flavor, spec.timeout_minutes
    )
    # A native sidecar: the worker starts once the model's startup probe passes, and the
    # model stops when the worker is done, so the Job completes.
    model["restartPolicy"] = "Always"
    fetch, volumes = model_fetch(inputs.version, inputs.catalog, spec.storage)
    worker = {
        "name": "worker",
        "image": inputs.catalog.images.inferops,
        "args": ["batch-worker"],
        "env": [
            {"name": CONFIG_ENV, "value": inputs.worker_config_json()},
            {"name": WORKERS_ENV, "value": str(spec.compute_nodes)},
            *storage_env(spec.storage),
        ],
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "securityContext": container_security_context(read_only_root=True),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": pod_security_context(),
        "initContainers": [*fetch, model],
        "containers": [worker],
        # Neither the worker nor the model calls the Kubernetes API: no token to read.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "volumes": [*volumes, {"name": "tmp", "emptyDir": {}}],
        **placement(inputs.catalog.public_pool()),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(inputs.name, inputs.namespace, labels, inputs.obj),
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.compute_nodes,
            "parallelism": spec.compute_nodes,
            "backoffLimitPerIndex": BACKOFF_PER_INDEX,
            "suspend": spec.stopped,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
