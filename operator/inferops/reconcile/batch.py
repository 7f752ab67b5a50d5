"""Reconciling a BatchService: validate, create the Indexed Job once, suspend, report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inferops.api.application import AIApplicationSpec
from inferops.api.batch import BatchServiceSpec
from inferops.api.catalog import Catalog
from inferops.api.names import API_VERSION, KIND_APPLICATION, KIND_BATCH
from inferops.reconcile.batch_status import batch_status
from inferops.reconcile.common import (
    Outcome,
    applications,
    blocker,
    is_blocked_status,
    now,
    write_blocked,
    write_status,
)
from inferops.reconcile.kube import Kube
from inferops.resources.batch import BatchInputs, batch_job, task_id
from inferops.resources.labels import owner_labels
from inferops.worker.config import config_from_service, config_to_env_json


def worker_config_json(
    obj: Mapping[str, Any], app_obj: Mapping[str, Any], catalog: Catalog, model_port: int
) -> str:
    config = config_from_service(
        dict(obj),
        dict(app_obj),
        f"http://127.0.0.1:{model_port}",
        task_id(obj),
        0,
        int(obj["spec"].get("computeNodes") or 1),
        catalog.batch,
    )
    return config_to_env_json(config)


def desired_job(kube: Kube, catalog: Catalog, obj: Mapping[str, Any]) -> dict[str, Any]:
    spec = BatchServiceSpec.model_validate(obj["spec"])
    namespace = obj["metadata"]["namespace"]
    app_obj = kube.get(API_VERSION, KIND_APPLICATION, namespace, spec.application)
    if app_obj is None:
        raise LookupError(f"application {spec.application!r} disappeared")
    versions = AIApplicationSpec.model_validate(app_obj["spec"]).versions
    version = next(v for v in versions if v.version == spec.version)
    config = worker_config_json(obj, app_obj, catalog, version.port)
    return batch_job(BatchInputs(obj, spec, version, catalog, config))


def reconcile_batch(kube: Kube, catalog: Catalog, namespace: str, name: str) -> Outcome | None:
    obj = kube.get(API_VERSION, KIND_BATCH, namespace, name)
    if obj is None:
        return None
    job = kube.get("batch/v1", "Job", namespace, name)
    if job is None:
        block = blocker(kube, catalog, obj, applications(kube, namespace))
        if block is not None:
            return write_blocked(kube, obj, block)
        kube.apply(desired_job(kube, catalog, obj))
    elif bool(job["spec"].get("suspend")) != bool(obj["spec"].get("stopped")):
        # A Job's pod template is immutable: once it runs, only suspension follows the spec.
        kube.request(
            "PATCH",
            f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
            body={"spec": {"suspend": bool(obj["spec"].get("stopped"))}},
            content_type="application/merge-patch+json",
        )
    return refresh_batch_status(kube, namespace, name)


def refresh_batch_status(kube: Kube, namespace: str, name: str) -> Outcome | None:
    obj = kube.get(API_VERSION, KIND_BATCH, namespace, name)
    if obj is None:
        return None
    job = kube.get("batch/v1", "Job", namespace, name)
    if job is None and is_blocked_status(obj):
        return None  # invalid or over quota: reconcile_batch owns that status
    spec = BatchServiceSpec.model_validate(obj["spec"])
    pods = kube.list_objects("v1", "Pod", namespace, owner_labels(KIND_BATCH, name))
    status = batch_status(
        spec,
        generation=obj["metadata"].get("generation"),
        old=obj.get("status"),
        job=job,
        pods=pods,
        task=task_id(obj),
        now=now(),
    )
    return write_status(kube, obj, status)
