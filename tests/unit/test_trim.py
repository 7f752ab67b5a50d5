"""What the caches keep of each kind: what a pass reads, nothing else."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from inferops.reconcile.causes import Cause, pod_causes
from inferops.reconcile.trim import MESSAGE_LIMIT, trim
from inferops.reconcile.workload_health import rolled_out

NOW = datetime.datetime(2026, 1, 1, 0, 10, tzinfo=datetime.UTC)
META = {
    "name": "x",
    "namespace": "ns",
    "uid": "u",
    "resourceVersion": "7",
    "generation": 3,
    "labels": {"app": "x"},
    "annotations": {
        "serving.inferops.dev/applied-hash": "abc",
        "kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 5000 + "}",
    },
    "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
}
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": META,
    "spec": {
        "containers": [
            {
                "name": "model",
                "image": "i",
                "env": [{"name": "A"}] * 50,
                "resources": {"limits": {"memory": "512Mi", "cpu": "1"}, "requests": {"cpu": "1"}},
            }
        ]
    },
    "status": {
        "phase": "Running",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "True",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
        ],
        "podIP": "10.0.0.1",
        "hostIP": "192.168.0.2",
        "containerStatuses": [
            {
                "name": "model",
                "ready": False,
                "restartCount": 4,
                "image": "i",
                "imageID": "sha256:" + "0" * 64,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {
                    "terminated": {"exitCode": 1, "reason": "Error", "message": "m" * 9000}
                },
            }
        ],
    },
}
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": META,
    "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "m"}] * 20}}},
    "status": {
        "observedGeneration": 3,
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "conditions": [{"type": "Available", "status": "True"}],
    },
}
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": META, "data": {"a": "b" * 9999}}


@pytest.mark.parametrize(
    ("obj", "kept", "dropped"),
    [
        (
            # podIP: where a rollout reads a router's counters
            POD,
            ["status.phase", "status.containerStatuses", "status.podIP"],
            ["status.hostIP"],
        ),
        (DEPLOYMENT, ["spec.replicas", "status.readyReplicas"], ["spec.template"]),
        (CONFIGMAP, ["metadata.labels"], ["data"]),
    ],
)
def test_trim_keeps_what_a_pass_reads(obj: Any, kept: list[str], dropped: list[str]) -> None:
    small = trim(obj)

    def has(path: str) -> bool:
        node: Any = small
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    assert all(has(p) for p in kept)
    assert not any(has(p) for p in dropped)
    assert "managedFields" not in small["metadata"]
    assert small["metadata"]["annotations"] == {"serving.inferops.dev/applied-hash": "abc"}
    assert len(json.dumps(small)) < 6000


def test_a_trimmed_pod_keeps_its_memory_limit_and_scheduling_only() -> None:
    small = trim(POD)
    assert small["spec"] == {
        "containers": [{"name": "model", "resources": {"limits": {"memory": "512Mi"}}}]
    }
    assert [c["type"] for c in small["status"]["conditions"]] == ["PodScheduled"]


def test_a_trimmed_pod_still_tells_its_crash_and_a_deployment_its_rollout() -> None:
    def causes(pod: Any) -> list[Cause]:
        return pod_causes([pod], now=NOW, timeout_minutes=5)

    assert causes(trim(POD)) == causes(POD)
    assert [c.reason for c in causes(trim(POD))] == ["CrashLoop"]
    terminated = trim(POD)["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert len(terminated["message"]) == MESSAGE_LIMIT
    assert rolled_out(trim(DEPLOYMENT)) == rolled_out(DEPLOYMENT) is True


def test_own_kinds_keep_spec_and_status() -> None:
    obj = {
        "apiVersion": "serving.inferops.dev/v1alpha1",
        "kind": "RealTimeService",
        "metadata": META,
        "spec": {"versions": []},
        "status": {"phase": "Running"},
    }
    small = trim(obj)
    assert small["spec"] == obj["spec"] and small["status"] == obj["status"]
    assert small["metadata"]["generation"] == 3
