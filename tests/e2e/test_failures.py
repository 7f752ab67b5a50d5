"""Failures for real: an image that does not exist, a model that crash-loops, one killed
for lack of memory, one asking for a GPU the node does not have, and a version that never
becomes ready. While Deploying, each service's Ready reason (the Reason column of
`kubectl get`) and message name the cause; once timeoutMinutes (the minimum, 3) passes,
each is Failed with the cause still in its message. The operator keeps running throughout.
Then a service whose shadow cannot pull its image: it is Running, since the shadow answers
no client, and its condition ShadowsReady names the cause.

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
OOM = "import time; hog = b'x' * (400 << 20); time.sleep(3600)"
# service name -> (changes to the iris example's version 1.0.0, the flavor, the Ready reason
# while Deploying, what the message must name)
CASES: dict[str, tuple[dict[str, Any], str, str, tuple[str, ...]]] = {
    "fail-image": (
        {"image": "ghcr.io/inferops/no-such-image:0.1.0"},
        "cpu.2u4g",
        "ImagePullBackOff",
        ("image ghcr.io/inferops/no-such-image:0.1.0 cannot be pulled",),
    ),
    "fail-crash": (
        {"image": PROJECT_IMAGE, "args": ["model-server", "--model", "/nonexistent"]},
        "cpu.2u4g",
        "CrashLoop",
        # the exit code and the model's own last words, from its termination message
        ("last exit code 2", "/nonexistent/model.json: cannot read"),
    ),
    "fail-oom": (
        # 400 MiB, written (so resident), in a 192Mi container
        {"image": PROJECT_IMAGE, "command": ["python3", "-c", OOM], "args": []},
        "cpu.2u4g",
        "OOMKilled",
        ("killed for lack of memory (OOMKilled) at its memory limit 192Mi",),
    ),
    "fail-gpu": (
        {"image": PROJECT_IMAGE, "args": ["model-server", "--model", IRIS]},
        "gpu.1x",
        "Unschedulable",
        ("waiting for a node in pool public", "of timeoutMinutes 3", "Insufficient nvidia.com/gpu"),
    ),
    "fail-never-ready": (
        {
            "image": PROJECT_IMAGE,
            "args": ["model-server", "--model", IRIS],
            "health": {"path": "/never-ready"},
        },
        "cpu.2u4g",
        "StartupProbeFailing",
        # after timeoutMinutes the kubelet restarts it: the first fragment holds throughout
        ("startup probe is not passing yet", "(timeoutMinutes 3)"),
    ),
}


def objects() -> list[dict[str, Any]]:
    example = yaml.safe_load((REPO / "examples" / "iris-application.yaml").read_text())
    items = []
    for name, (change, flavor, _, _) in CASES.items():
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
                            "specification": flavor,
                            "computeNodes": 1,
                            "timeoutMinutes": 3,
                        }
                    ],
                },
            }
        )
    return items


SHADOWED = "fail-shadow"
BAD_IMAGE = "ghcr.io/inferops/no-such-image:0.2.0"


def shadowed_objects() -> list[dict[str, Any]]:
    """Production 1.0.0 as in the example; its shadow 2.0.0 on an image that does not exist."""
    example = yaml.safe_load((REPO / "examples" / "iris-application.yaml").read_text())
    good, bad = (copy.deepcopy(v) for v in example["spec"]["versions"][:2])
    bad["image"] = BAD_IMAGE
    entry = {"application": SHADOWED, "specification": "cpu.2u4g", "computeNodes": 1}
    return [
        {
            "apiVersion": example["apiVersion"],
            "kind": "AIApplication",
            "metadata": {"name": SHADOWED},
            "spec": {"versions": [good, bad]},
        },
        {
            "apiVersion": "serving.inferops.dev/v1alpha1",
            "kind": "RealTimeService",
            "metadata": {"name": SHADOWED},
            "spec": {
                "resourcePool": "public",
                "versions": [
                    {**entry, "version": "1.0.0", "trafficRatio": 100, "timeoutMinutes": 3},
                    {**entry, "version": "2.0.0", "shadow": {"samplePercent": 10}},
                ],
            },
        },
    ]


def ready(status: dict[str, Any], type_: str = "Ready") -> dict[str, Any]:
    found = [c for c in status.get("conditions") or () if c["type"] == type_]
    return dict(found[0]) if found else {}


def wait_shadowed(api: Any, ns: str) -> dict[str, Any]:
    """The shadowed service's status once it is Running with its shadow's image refused."""

    def now() -> dict[str, Any]:
        return current_status(custom_object(api, ns, "realtimeservices", SHADOWED))

    def settled() -> dict[str, Any] | None:
        status = now()
        shadows = ready(status, "ShadowsReady").get("reason")
        return status if (status.get("phase"), shadows) == ("Running", "ImagePullBackOff") else None

    try:
        found: dict[str, Any] = wait_for(settled, timeout=180, interval=2, what="the shadow")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{now()}\n{pods_report(api, ns)}") from None
    return found


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

        def reasons() -> dict[str, str]:
            return {name: ready(status).get("reason", "") for name, status in statuses().items()}

        def each_cause_named() -> dict[str, dict[str, Any]] | None:
            now = statuses()
            named = all(
                status.get("phase") == "Deploying" and ready(status).get("reason") == CASES[name][2]
                for name, status in now.items()
            )
            return now if named else None

        # While Deploying (before timeoutMinutes), the reason and message name each cause.
        try:
            deploying = wait_for(each_cause_named, timeout=170, interval=2, what="each cause")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{reasons()}\n{statuses()}") from None
        table = kubectl("get", "rts", "-n", ns, "-o", "wide", *CASES)
        print(table)
        rows = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
        for name, (_, _, reason, fragments) in CASES.items():
            status = deploying[name]
            assert rows[name][1:3] == ["Deploying", reason]  # the PHASE and REASON columns
            for fragment in fragments:
                assert fragment in status["message"], (name, status["message"])
                assert fragment in ready(status)["message"]
        events = kubectl("get", "events", "-n", ns, "--field-selector", "type=Warning")
        for name, (_, _, reason, _) in CASES.items():
            assert any(name in line and reason in line for line in events.splitlines()), (
                name,
                events,
            )

        def all_failed() -> dict[str, dict[str, Any]] | None:
            now = statuses()
            return now if all(s.get("phase") == "Failed" for s in now.values()) else None

        try:
            final = wait_for(all_failed, timeout=480, interval=2, what="every case Failed")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{statuses()}\n{pods_report(api_client, ns)}") from None
        print(kubectl("get", "rts", "-n", ns, "-o", "wide", *CASES))
        for name, (_, _, _, fragments) in CASES.items():
            status = final[name]
            assert ready(status)["status"] == "False"
            assert ready(status)["reason"] == "DeploymentTimeout"
            assert "not ready within timeoutMinutes (3)" in status["message"]
            assert fragments[0] in status["message"], (name, status)
        # the operator wrote every Failed status above and went on: same pod, no restart
        assert operator_restarts(api_client, operator) == [0]
    finally:
        kubectl("delete", "-n", ns, "rts", *CASES, "--ignore-not-found")
        kubectl("delete", "-n", ns, "aiapp", *CASES, "--ignore-not-found")


def test_a_shadow_that_cannot_start_leaves_the_service_running(
    operator: Operator, kubectl: Kubectl, api_client: Any
) -> None:
    ns = operator.apps
    apply_objects(kubectl, ns, shadowed_objects())
    try:
        status = wait_shadowed(api_client, ns)
        print(kubectl("get", "rts", "-n", ns, SHADOWED, "-o", "wide"))
        shadows = ready(status, "ShadowsReady")
        assert shadows["status"] == "False"
        said = f"shadow {SHADOWED}:2.0.0: 0/1 instances ready"
        assert said in shadows["message"] and said in status["message"], status
        assert f"image {BAD_IMAGE} cannot be pulled" in shadows["message"], shadows
        assert ready(status)["status"] == "True"  # production serves
        assert status["ready"] == "1/1"
    finally:
        kubectl("delete", "-n", ns, "rts", SHADOWED, "--ignore-not-found", "--wait=true")
        kubectl("delete", "-n", ns, "aiapp", SHADOWED, "--ignore-not-found", "--wait=true")
