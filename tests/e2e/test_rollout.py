"""Progressive delivery on the real node (issue 17): with traffic flowing, a good version
is promoted through every step to 100%, then a bad one (20% of its answers are 500) is
rolled back at its first step, the error rate in the status message, the traffic back on
the version before. The gates read the router pods' own counters (no Prometheus)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from k8s_helpers import Kubectl, wait_for
from kubernetes import client

from tests.e2e.support import REPO, Operator, apply_objects, custom_object, wait_phase

pytestmark = pytest.mark.timeout(900)

APP, SERVICE = "canary", "canary-online"
IRIS = ["model-server", "--model", "/opt/inferops/models/iris"]
BODY = json.dumps(
    {"data": {"req_data": [{"input_1": 5.1, "input_2": 3.5, "input_3": 1.4, "input_4": 0.2}]}}
).encode()


def application() -> dict[str, Any]:
    """Three versions of the iris model; 3.0.0 answers a fifth of its requests 500."""
    import yaml

    example = yaml.safe_load((REPO / "examples" / "iris-application.yaml").read_text())
    base = example["spec"]["versions"][0]
    versions = []
    for name, args in (
        ("1.0.0", IRIS),
        ("2.0.0", IRIS),
        ("3.0.0", [*IRIS, "--fail-percent", "20"]),
    ):
        versions.append({**base, "version": name, "args": args})
    return {
        "apiVersion": example["apiVersion"],
        "kind": "AIApplication",
        "metadata": {"name": APP},
        "spec": {"versions": versions},
    }


def entry(name: str, ratio: int) -> dict[str, Any]:
    return {"application": APP, "version": name, "trafficRatio": ratio, "specification": "cpu.2u4g"}


def service(*versions: dict[str, Any], rollout: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"versions": list(versions)}
    if rollout is not None:
        spec["rollout"] = rollout
    return {
        "apiVersion": "serving.inferops.dev/v1alpha1",
        "kind": "RealTimeService",
        "metadata": {"name": SERVICE},
        "spec": spec,
    }


class Traffic:
    """Requests at a steady rate through the stable Service, for the gates to read."""

    def __init__(self, host: str, rate: float = 25.0) -> None:
        self.host, self.interval = host, 1.0 / rate
        self.answers: Counter[tuple[str, int]] = Counter()
        self.errors = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                conn = conn or http.client.HTTPConnection(self.host, 80, timeout=10)
                conn.request("POST", "/", body=BODY, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                version = response.getheader("X-Inferops-Version", "")
                self.answers[(version, response.status)] += 1
            except (OSError, http.client.HTTPException):
                self.errors += 1  # a router pod going away during a step's roll
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        self.thread.join(15)


def rollout_state(api: Any, ns: str) -> dict[str, Any]:
    status = custom_object(api, ns, "realtimeservices", SERVICE).get("status") or {}
    return dict(status.get("rollout") or {})


def watch_rollout(
    api: Any, ns: str, version: str, until: set[str], timeout: float
) -> list[dict[str, Any]]:
    """status.rollout of `version` each time it changes, until its phase is in `until`."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = rollout_state(api, ns)
        if state.get("version") != version:  # the operator has not seen the new spec yet
            time.sleep(1)
            continue
        if not seen or state.get("summary") != seen[-1].get("summary"):
            seen.append(state)
            print(f"  rollout: {state.get('summary')} - {state.get('message')}")
        if state.get("phase") in until:
            return seen
        time.sleep(1)
    raise AssertionError(f"rollout did not reach {until}: {seen[-1:] or 'no status'}")


def router_counts(api: Any, ns: str) -> list[str]:
    """The router pods' shadow and comparison counters (for a failure's message)."""
    import urllib.request

    pods = (
        client.CoreV1Api(api)
        .list_namespaced_pod(
            ns,
            label_selector=f"serving.inferops.dev/owner-name={SERVICE},app.kubernetes.io/component=router",
        )
        .items
    )
    lines = []
    for pod in pods:
        try:
            with urllib.request.urlopen(f"http://{pod.status.pod_ip}:9090/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError as exc:
            lines.append(f"{pod.metadata.name}: {exc}")
            continue
        lines += [
            f"{pod.metadata.name}: {line}"
            for line in text.splitlines()
            if ('route="shadow"' in line and "_total" in line) or "comparisons_total{" in line
        ]
    return lines


def events(api: Any, ns: str) -> list[tuple[str, str]]:
    items = (
        client.CoreV1Api(api)
        .list_namespaced_event(ns, field_selector=f"involvedObject.name={SERVICE}")
        .items
    )
    return [(e.reason, e.message) for e in items if e.reason.startswith("Rollout")]


@pytest.fixture(scope="module")
def canary(operator: Operator, kubectl: Kubectl, api_client: Any) -> Iterator[str]:
    ns = operator.apps
    apply_objects(kubectl, ns, [application(), service(entry("1.0.0", 100), entry("2.0.0", 0))])
    try:
        wait_phase(api_client, ns, "realtimeservices", SERVICE, ("Running",))
        ip = client.CoreV1Api(api_client).read_namespaced_service(SERVICE, ns).spec.cluster_ip
        yield ip
    finally:
        kubectl("delete", "-n", ns, "rts", SERVICE, "--ignore-not-found", "--wait=true")
        kubectl("delete", "-n", ns, "aiapp", APP, "--ignore-not-found", "--wait=true")


GATES = {"maxErrorRatePercent": 5, "maxLatencyMs": 2000, "minRequests": 20}


def test_a_good_version_is_promoted_and_a_bad_one_rolled_back(
    canary: str, operator: Operator, kubectl: Kubectl, api_client: Any
) -> None:
    ns = operator.apps
    with Traffic(canary) as traffic:
        wait_for(lambda: sum(traffic.answers.values()) > 20, timeout=60, what="traffic flowing")
        # Promote 2.0.0: 20%, 50%, then 100%.
        good = {
            "version": f"{APP}:2.0.0",
            "steps": [
                {"percent": 20, "bakeSeconds": 15},
                {"percent": 50, "bakeSeconds": 15},
                {"percent": 100, "bakeSeconds": 0},
            ],
            "gates": GATES,
        }
        apply_objects(kubectl, ns, [service(entry("1.0.0", 0), entry("2.0.0", 100), rollout=good)])
        done = {"Succeeded", "RolledBack", "Failed"}
        seen = watch_rollout(api_client, ns, f"{APP}:2.0.0", done, 420)
        assert seen[-1]["phase"] == "Succeeded", seen[-1]
        steps = [s["summary"] for s in seen]
        for shown in ("canary:2.0.0=20%", "canary:2.0.0=50%"):
            assert any(shown in s for s in steps), steps
        status = custom_object(api_client, ns, "realtimeservices", SERVICE)["status"]
        assert status["traffic"] == "canary:1.0.0=0,canary:2.0.0=100"
        reasons = [r for r, _ in events(api_client, ns)]
        assert {"RolloutStarted", "RolloutStepped", "RolloutSucceeded"} <= set(reasons), reasons
        before = Counter(traffic.answers)
        time.sleep(5)
        recent = Counter(traffic.answers)
        recent.subtract(before)
        assert {v for (v, _), n in recent.items() if n > 0} <= {f"{APP}:2.0.0"}

        # Introduce 3.0.0, which fails a fifth of its requests: rolled back at step 1.
        bad = {
            "version": f"{APP}:3.0.0",
            "steps": [{"percent": 25, "bakeSeconds": 120}, {"percent": 100, "bakeSeconds": 0}],
            "gates": GATES,
        }
        started = time.monotonic()
        apply_objects(
            kubectl,
            ns,
            [service(entry("2.0.0", 0), entry("3.0.0", 100), rollout=bad)],
        )
        seen = watch_rollout(api_client, ns, f"{APP}:3.0.0", done, 300)
        took = time.monotonic() - started
        final = seen[-1]
        assert final["phase"] == "RolledBack", final
        assert final["step"] == 0
        assert "maxErrorRatePercent" in final["message"]
        assert "traffic back to canary:2.0.0=100,canary:3.0.0=0 " in final["message"]
        value = next(g["value"] for g in final["gates"] if g["gate"] == "maxErrorRatePercent")
        assert 5 < value < 60, final  # about 20%
        status = custom_object(api_client, ns, "realtimeservices", SERVICE)["status"]
        assert status["traffic"] == "canary:2.0.0=100,canary:3.0.0=0"
        warning = [m for r, m in events(api_client, ns) if r == "RolloutRolledBack"]
        assert warning and "maxErrorRatePercent" in warning[0]
        shown = kubectl("get", "rts", SERVICE, "-n", ns)
        assert "RolledBack at 1/2" in shown, shown
        print(
            f"bad version rolled back {took:.0f} s after the spec change, error rate {value}%; "
            f"answers {dict(traffic.answers)}, connection errors {traffic.errors}"
        )


def test_a_shadow_step_compares_answers_before_any_share(
    canary: str, operator: Operator, kubectl: Kubectl, api_client: Any
) -> None:
    """1.0.0 comes back shadow-first: it answers copies of every request (compared with
    2.0.0's, the same model) and gets its share only once it agrees."""
    ns = operator.apps
    with Traffic(canary) as traffic:
        wait_for(lambda: sum(traffic.answers.values()) > 20, timeout=60, what="traffic flowing")
        shadow_first = {
            "version": f"{APP}:1.0.0",
            "steps": [
                {"percent": 0, "shadowPercent": 100, "bakeSeconds": 10},
                {"percent": 100, "bakeSeconds": 0},
            ],
            "gates": {"minAgreementPercent": 95, "minRequests": 20},
        }
        apply_objects(
            kubectl, ns, [service(entry("1.0.0", 100), entry("2.0.0", 0), rollout=shadow_first)]
        )
        done = {"Succeeded", "RolledBack", "Failed"}
        seen = watch_rollout(api_client, ns, f"{APP}:1.0.0", done, 300)
        assert seen[-1]["phase"] == "Succeeded", (seen[-1], router_counts(api_client, ns))
        shadowing = [s for s in seen if "shadow 100%" in s.get("summary", "")]
        assert shadowing, [s["summary"] for s in seen]
        # The step's Event says what it held (a status between two looks may pass unseen).
        stepped = [
            m for r, m in events(api_client, ns) if r == "RolloutStepped" and f"{APP}:1.0.0" in m
        ]
        assert stepped and "gates held: minAgreementPercent" in stepped[-1], stepped
        status = custom_object(api_client, ns, "realtimeservices", SERVICE)["status"]
        assert status["traffic"] == "canary:1.0.0=100,canary:2.0.0=0"
        print(f"shadow step: {[s['summary'] for s in seen]}; {stepped[-1]}")
