"""Failures for real: an image that does not exist, a model that crash-loops, and a version
that never becomes ready. Each service ends Failed once timeoutMinutes (the minimum, 3)
passes, with a message naming the cause; the operator keeps running throughout.

The node's containerd cannot reach any registry (realnode.py): the missing image fails to
pull on the machine itself, and nothing leaves it."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from k8s_helpers import Kubectl, wait_for
from kubernetes import client

from tests.e2e.support import (
    PROJECT_IMAGE,
    REPO,
    Operator,
    apply_objects,
    current_status,
    custom_object,
    pods_report,
)

pytestmark = pytest.mark.timeout(900)

IRIS = "/opt/inferops/models/iris"
# service name -> (changes to the iris example's version 1.0.0, what the message must name)
CASES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "fail-image": (
        {"image": "ghcr.io/inferops/no-such-image:0.1.0"},
        ("ImagePullBackOff", "ErrImagePull"),
    ),
    "fail-crash": (
        {"image": PROJECT_IMAGE, "args": ["model-server", "--model", "/nonexistent"]},
        # the model's own last words, from its termination message
        ("/nonexistent/model.json: cannot read",),
    ),
    "fail-never-ready": (
        {
            "image": PROJECT_IMAGE,
            "args": ["model-server", "--model", IRIS],
            "health": {"path": "/never-ready"},
        },
        ("not ready within timeoutMinutes (3)",),
    ),
}


def objects() -> list[dict[str, Any]]:
    example = yaml.safe_load((REPO / "examples" / "iris-application.yaml").read_text())
    items = []
    for name, (change, _) in CASES.items():
        version = copy.deepcopy(example["spec"]["versions"][0])
        version.update(change)
        items.append(
            {
                "apiVersion": example["apiVersion"],
                "kind": "AIApplication",
                "metadata": {"name": name},
                "spec": {"versions": [version]},
            }
        )
        items.append(
            {
                "apiVersion": "serving.inferops.dev/v1alpha1",
                "kind": "RealTimeService",
                "metadata": {"name": name},
                "spec": {
                    "resourcePool": "public",
                    "versions": [
                        {
                            "application": name,
                            "version": "1.0.0",
                            "trafficRatio": 100,
                            "specification": "cpu.2u4g",
                            "computeNodes": 1,
                            "timeoutMinutes": 3,
                        }
                    ],
                },
            }
        )
    return items


def operator_restarts(api: Any, operator: Operator) -> list[int]:
    pods = (
        client.CoreV1Api(api)
        .list_namespaced_pod(
            operator.namespace, label_selector="app.kubernetes.io/component=operator"
        )
        .items
    )
    return [c.restart_count for p in pods for c in p.status.container_statuses or [] if c.ready]


def operator_last_exit(api: Any, operator: Operator) -> str:
    """Why the operator container last stopped and its last log lines (for a failure)."""
    core = client.CoreV1Api(api)
    pods = core.list_namespaced_pod(
        operator.namespace, label_selector="app.kubernetes.io/component=operator"
    ).items
    lines = []
    for pod in pods:
        for status in pod.status.container_statuses or []:
            lines.append(f"{pod.metadata.name}/{status.name}: last state {status.last_state}")
            try:
                lines.append(
                    core.read_namespaced_pod_log(
                        pod.metadata.name,
                        operator.namespace,
                        container=status.name,
                        previous=True,
                        tail_lines=60,
                    )
                )
            except client.ApiException as exc:
                lines.append(f"no previous log: {exc.reason}")
    return "\n".join(lines)


def test_failures_end_failed_naming_the_cause(
    operator: Operator, kubectl: Kubectl, api_client: Any
) -> None:
    ns = operator.apps
    assert operator_restarts(api_client, operator) == [0]
    apply_objects(kubectl, ns, objects())
    try:

        def statuses() -> dict[str, dict[str, Any]]:
            return {
                name: current_status(custom_object(api_client, ns, "realtimeservices", name))
                for name in CASES
            }

        def all_failed() -> dict[str, dict[str, Any]] | None:
            now = statuses()
            return now if all(s.get("phase") == "Failed" for s in now.values()) else None

        try:
            final = wait_for(all_failed, timeout=480, interval=2, what="every case Failed")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{statuses()}\n{pods_report(api_client, ns)}") from None
        for name, (_, causes) in CASES.items():
            status = final[name]
            ready = [c for c in status["conditions"] if c["type"] == "Ready"]
            assert ready[0]["status"] == "False" and ready[0]["reason"] == "DeploymentTimeout"
            assert any(cause in status["message"] for cause in causes), (name, status)
            print(f"{name}: {status['phase']}: {status['message']}")
        # the operator wrote every Failed status above and went on: same pod, no restart
        assert operator_restarts(api_client, operator) == [0]
    finally:
        kubectl("delete", "-n", ns, "rts", *CASES, "--ignore-not-found")
        kubectl("delete", "-n", ns, "aiapp", *CASES, "--ignore-not-found")
