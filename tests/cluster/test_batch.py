"""BatchService reconciliation with the real operator on the real API server.

kwok runs the Job's pods on fake nodes and completes them, so no worker really runs here
(the worker itself is proven in tests/unit/test_worker_*.py against real servers).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_helpers import wait_for
from kubernetes import client

from inferops.api.names import GROUP, VERSION
from tests.cluster.operator_process import Operator, running_operator
from tests.unit.rules_table import app, bs


@pytest.fixture
def operator(kubeconfig: Path, namespace: str, kwok_nodes: list[str]) -> Iterator[Operator]:
    with running_operator(kubeconfig, [namespace]) as running:
        yield running


class Batch:
    def __init__(self, api_client: Any, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.jobs = client.BatchV1Api(api_client)
        self.ns = namespace

    def create(self, obj: dict[str, Any]) -> None:
        plural = "aiapplications" if obj["kind"] == "AIApplication" else "batchservices"
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, plural, copy.deepcopy(obj)
        )

    def get(self, name: str = "job") -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, "batchservices", name
        )
        return result

    def phase(self, *want: str, name: str = "job", timeout: float = 90) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            status = self.get(name).get("status") or {}
            return status if status.get("phase") in want else None

        return dict(wait_for(check, timeout=timeout, what=f"{name} in {want}"))


@pytest.fixture
def batch(api_client: Any, namespace: str) -> Batch:
    return Batch(api_client, namespace)


def test_job_spec_and_completion(batch: Batch, operator: Operator) -> None:
    batch.create(app("iris"))
    batch.create(bs(computeNodes=2, concurrency=8, queueName="team-a"))
    status = batch.phase("Deploying", "Running", "Completed")
    uid = batch.get()["metadata"]["uid"]
    assert status["taskId"] == uid.replace("-", "")[:12]
    job = batch.jobs.read_namespaced_job("job", batch.ns)
    assert (job.spec.completion_mode, job.spec.completions, job.spec.parallelism) == (
        "Indexed",
        2,
        2,
    )
    assert job.metadata.owner_references[0].kind == "BatchService"
    assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == "team-a"
    pod = job.spec.template.spec
    sidecar = pod.init_containers[-1]
    assert sidecar.restart_policy == "Always" and sidecar.startup_probe is not None
    worker = pod.containers[0]
    config = json.loads(next(e.value for e in worker.env if e.name == "INFEROPS_BATCH_CONFIG"))
    assert config["task_id"] == status["taskId"]
    assert config["input_path"] == "s3://bucket/in/"
    assert config["model_url"] == "http://127.0.0.1:8080"
    # kwok completes the pods: the Job completes and so does the service.
    status = batch.phase("Completed", timeout=120)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["observedGeneration"] == 1


def test_stopped_suspends_and_deleting_removes_the_job(batch: Batch, operator: Operator) -> None:
    batch.create(app("iris"))
    batch.create(bs(stopped=True))
    batch.phase("Stopped")
    assert batch.jobs.read_namespaced_job("job", batch.ns).spec.suspend is True
    batch.custom.patch_namespaced_custom_object(
        GROUP, VERSION, batch.ns, "batchservices", "job", {"spec": {"stopped": False}}
    )
    wait_for(
        lambda: batch.jobs.read_namespaced_job("job", batch.ns).spec.suspend is False,
        timeout=30,
        what="Job resumed",
    )
    batch.phase("Deploying", "Running", "Completed")
    batch.custom.delete_namespaced_custom_object(GROUP, VERSION, batch.ns, "batchservices", "job")
    wait_for(
        lambda: not batch.jobs.list_namespaced_job(batch.ns).items,
        timeout=60,
        what="Job garbage-collected",
    )


def test_invalid_batch_service_is_failed_without_a_job(batch: Batch, operator: Operator) -> None:
    batch.create(app("iris"))
    batch.create(bs(version="9.9.9"))
    status = batch.phase("Failed")
    assert "spec.version: application 'iris' has no version '9.9.9'" in status["message"]
    assert batch.jobs.list_namespaced_job(batch.ns).items == []
