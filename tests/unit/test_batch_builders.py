"""BatchService builder and status: tables, outputs checked against Kubernetes' schemas."""

from __future__ import annotations

import copy
import datetime
import json
from dataclasses import replace
from typing import Any

import kubernetes_validate
import pytest

from inferops.api.application import AIApplicationSpec
from inferops.api.batch import BatchServiceSpec
from inferops.api.catalog import default_catalog
from inferops.contract.batch_worker import config_from_env, config_from_service
from inferops.reconcile.batch_status import batch_status as batch_status_model
from inferops.reconcile.common import status_fields
from inferops.resources.batch import BatchInputs, batch_job, task_id
from tests.unit.rules_table import app, bs


def batch_status(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """The status as the operator patches it."""
    return status_fields(batch_status_model(*args, **kwargs))


K8S = "1.37.0"
NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def job_for(obj: dict[str, Any], model_uri: str | None = None) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"].update(namespace="ns", uid=UID)
    spec = BatchServiceSpec.model_validate(obj["spec"])
    app_spec = copy.deepcopy(app()["spec"])
    if model_uri:
        app_spec["versions"][0]["modelUri"] = model_uri
    version = AIApplicationSpec.model_validate(app_spec).versions[0]
    return batch_job(BatchInputs(obj, spec, version, default_catalog()))


CASES = {
    "plain": bs(),
    "workers": bs(computeNodes=3),
    "stopped": bs(stopped=True),
    "queue": bs(queueName="team-a"),
    "storage": bs(storage={"endpoint": "http://s3:9000", "secretRef": {"name": "creds"}}),
}


@pytest.mark.parametrize("case", CASES)
def test_job_passes_kubernetes_schema(case: str) -> None:
    kubernetes_validate.validate(job_for(CASES[case]), K8S, strict=True)


def test_indexed_job_shape() -> None:
    job = job_for(CASES["workers"])
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    assert spec["backoffLimitPerIndex"] >= 1 and spec["suspend"] is False
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    model = pod["initContainers"][-1]
    assert model["restartPolicy"] == "Always"  # native sidecar
    assert (
        model["startupProbe"]["periodSeconds"] * model["startupProbe"]["failureThreshold"]
        >= 20 * 60
    )
    assert model["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    worker = pod["containers"][0]
    assert worker["args"] == ["batch-worker"]
    assert {"name": "INFEROPS_BATCH_WORKERS", "value": "3"} in worker["env"]
    # What a worker pod reads back is the config of this service and its app version, its
    # model the sidecar on the version's port.
    env = {e["name"]: e["value"] for e in worker["env"] if "value" in e}
    expected = config_from_service(
        CASES["workers"],
        app(),
        f"http://127.0.0.1:{model['ports'][0]['containerPort']}",
        task_id({"metadata": {"uid": UID}}),
        limits=default_catalog().batch,
    )
    assert config_from_env({**env, "JOB_COMPLETION_INDEX": "2"}) == replace(
        expected, worker_index=2
    )
    assert "nodeSelector" not in pod  # the public pool has no selector in the default catalog
    for container in [*pod["initContainers"], *pod["containers"]]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_stop_queue_and_storage() -> None:
    assert job_for(CASES["stopped"])["spec"]["suspend"] is True
    labels = job_for(CASES["queue"])["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "team-a"
    env = {
        e["name"]: e
        for e in job_for(CASES["storage"])["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["INFEROPS_S3_ENDPOINT"]["value"] == "http://s3:9000"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "creds",
        "key": "AWS_ACCESS_KEY_ID",
        "optional": False,
    }


def test_model_uri_fetch_runs_before_the_sidecar() -> None:
    pod = job_for(bs(), "s3://models/iris/")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["fetch-model", "model"]


def test_task_id_is_stable_and_short() -> None:
    obj = {"metadata": {"uid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}}
    assert task_id(obj) == task_id(copy.deepcopy(obj)) == "0f1e2d3c4b5a"


def pod(
    index: int, state: dict[str, Any], phase: str = "Running", created: str = "2026-01-01T00:00:00Z"
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"p{index}",
            "creationTimestamp": created,
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "status": {"phase": phase, "containerStatuses": [{"name": "worker", "state": state}]},
    }


def done(
    index: int,
    total: int,
    ok: int,
    bad: int,
    created: str = "2026-01-01T00:00:00Z",
    manifests: tuple[str, ...] = (),
) -> dict[str, Any]:
    message = json.dumps(
        {"total": total, "succeeded": ok, "failed": bad, "manifests": list(manifests)}
    )
    return pod(index, {"terminated": {"exitCode": 0, "message": message}}, "Succeeded", created)


JOB_RUNNING: dict[str, Any] = {"status": {"active": 2}}
JOB_DONE: dict[str, Any] = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
JOB_FAILED: dict[str, Any] = {
    "status": {
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "FailedIndexes",
                "message": "Job has failed indexes",
            }
        ]
    }
}


@pytest.mark.parametrize(
    ("job", "pods", "stopped", "phase", "progress"),
    [
        (None, [], False, "Deploying", (0, 0, 0)),
        (
            JOB_RUNNING,
            [pod(0, {"waiting": {"reason": "PodInitializing"}}, "Pending")],
            False,
            "Deploying",
            (0, 0, 0),
        ),
        (JOB_RUNNING, [pod(0, {"running": {}}), done(1, 5, 4, 1)], False, "Running", (5, 4, 1)),
        (JOB_DONE, [done(0, 5, 5, 0), done(1, 4, 3, 1)], False, "Completed", (9, 8, 1)),
        # A retried index is counted once: the newest successful worker wins.
        (
            JOB_DONE,
            [done(0, 5, 2, 3, "2026-01-01T00:00:00Z"), done(0, 5, 5, 0, "2026-01-01T01:00:00Z")],
            False,
            "Completed",
            (5, 5, 0),
        ),
        (JOB_FAILED, [], False, "Failed", (0, 0, 0)),
        (JOB_RUNNING, [], True, "Stopped", (0, 0, 0)),
        (JOB_DONE, [done(0, 1, 1, 0)], True, "Completed", (1, 1, 0)),
    ],
)
def test_status_table(
    job: Any, pods: list[Any], stopped: bool, phase: str, progress: tuple[int, int, int]
) -> None:
    spec = BatchServiceSpec.model_validate(bs(stopped=stopped)["spec"])
    status = batch_status(spec, generation=1, old=None, job=job, pods=pods, task="t1", now=NOW)
    assert status["phase"] == phase
    assert (
        status["progress"]["total"],
        status["progress"]["succeeded"],
        status["progress"]["failed"],
    ) == progress
    assert status["taskId"] == "t1"
    assert status["progressSummary"] == f"{progress[1] + progress[2]}/{progress[0]}"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == ("True" if phase == "Completed" else "False")


def test_manifests_are_collected_from_every_worker() -> None:
    spec = BatchServiceSpec.model_validate(bs()["spec"])
    pods = [
        done(0, 1, 1, 0, manifests=("s3://b/out/infer-result-t1.manifest",)),
        done(1, 1, 1, 0, manifests=("s3://b/out/infer-result-t1_1.manifest",)),
    ]
    status = batch_status(spec, generation=1, old=None, job=JOB_DONE, pods=pods, task="t1", now=NOW)
    assert status["outputManifests"] == [
        "s3://b/out/infer-result-t1.manifest",
        "s3://b/out/infer-result-t1_1.manifest",
    ]


def test_deploying_past_the_timeout_is_failed() -> None:
    spec = BatchServiceSpec.model_validate(bs(timeoutMinutes=3)["spec"])
    first = batch_status(spec, generation=1, old=None, job=JOB_RUNNING, pods=[], task="t", now=NOW)
    assert first["phase"] == "Deploying"
    later = batch_status(
        spec,
        generation=1,
        old=first,
        job=JOB_RUNNING,
        pods=[],
        task="t",
        now=NOW + datetime.timedelta(minutes=4),
    )
    assert later["phase"] == "Failed" and "timeoutMinutes (3)" in later["message"]
