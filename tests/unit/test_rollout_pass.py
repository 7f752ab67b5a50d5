"""A rollout through real passes over the in-memory cluster: the router config follows the
steps, status.rollout and the Events say where it stands, and the counters come from the
router agent's own exporter (its text format, parsed by the operator). The clock is
injected; the router pods' counters are served by a fake at the pods' IPs."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from prometheus_client import generate_latest

from inferops.api.catalog import default_catalog
from inferops.reconcile import realtime
from inferops.reconcile.realtime import reconcile_realtime
from inferops.reconcile.router_metrics import parse, quantile
from inferops.resources.realtime import CONFIG_HASH
from inferops.runtime.router.metrics import RouterMetrics
from tests.unit.fake_kube import FakeKube
from tests.unit.rules_table import app, rts, version
from tests.unit.test_reconcile_table import NAMESPACE, placed

T0 = datetime.datetime(2026, 11, 30, 9, 0, tzinfo=datetime.UTC)
OLD, NEW = "iris:1.0.0", "iris:2.0.0"
ROLLOUT = {
    "version": NEW,
    "steps": [{"percent": 5, "bakeSeconds": 300}, {"percent": 25}, {"percent": 100}],
    "gates": {"maxErrorRatePercent": 5, "minRequests": 100},
}


def exporter_text(counts: dict[str, tuple[int, int]], seconds: float = 0.02) -> str:
    """What a router agent serves after `counts` (version -> (ok, 5xx)) split requests."""
    metrics = RouterMetrics([OLD, NEW])
    for label, (ok, failed) in counts.items():
        for code, n in (("2xx", ok), ("5xx", failed)):
            for _ in range(n):
                metrics.observe(label, "split", code, seconds)
        metrics.observe(label, "pinned", "5xx", 9.0)  # pinned requests never count
    return generate_latest(metrics.registry).decode()


class PodMetrics:
    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.asked: list[str] = []

    def fetch(self, pod_ip: str) -> str | None:
        self.asked.append(pod_ip)
        return self.texts.get(pod_ip)


class Bench:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = T0
        self.metrics = PodMetrics()
        monkeypatch.setattr(realtime, "now", lambda: self.clock)
        monkeypatch.setattr(realtime, "METRICS", self.metrics)
        self.kube = FakeKube([NAMESPACE, placed(app(versions=("1.0.0", "2.0.0", "3.0.0")))])
        self.generation = 0

    def apply(self, obj: dict[str, Any]) -> None:
        self.generation += 1
        current = self.kube.get("serving.inferops.dev/v1alpha1", "RealTimeService", "ns", "svc")
        status = (current or {}).get("status")
        self.kube.apply(placed(obj, generation=self.generation, status=status))

    def pass_(self, seconds: float = 0.0, ready: bool = True) -> Any:
        self.clock = T0 + datetime.timedelta(seconds=seconds)
        if ready:  # every model instance is up (what a rollout waits for before a step)
            for d in self.kube.list_objects("apps/v1", "Deployment", "ns", {}):
                replicas = d["spec"].get("replicas") or 0
                ready = {"updatedReplicas": replicas, "readyReplicas": replicas}
                self.kube.patch_status("Deployment", "ns", d["metadata"]["name"], ready)
        outcome = reconcile_realtime(self.kube, default_catalog(), "ns", "svc")
        assert outcome is not None
        return outcome

    def split(self) -> dict[str, int]:
        config = self.kube.get("v1", "ConfigMap", "ns", "svc-router")
        assert config is not None
        block = re.search(r"\$inferops_split \{([^}]*)\}", config["data"]["nginx.conf"])
        assert block is not None
        found = re.findall(r"(\d+)% svc-iris-(\d)-0-0", block[1])
        return {f"iris:{v}.0.0": int(p) for p, v in found}

    def rollout(self) -> dict[str, Any]:
        obj = self.kube.get("serving.inferops.dev/v1alpha1", "RealTimeService", "ns", "svc")
        assert obj is not None
        return dict(obj["status"]["rollout"])

    def router_pods(self, ip: str, counts: dict[str, tuple[int, int]]) -> None:
        """A router pod of the current config, counting `counts`."""
        router = self.kube.get("apps/v1", "Deployment", "ns", "svc-router")
        assert router is not None
        digest = router["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]
        labels = router["spec"]["template"]["metadata"]["labels"]
        self.kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"svc-router-{ip.replace('.', '-')}",
                    "namespace": "ns",
                    "labels": labels,
                    "annotations": {CONFIG_HASH: digest},
                },
                "status": {"phase": "Running", "podIP": ip},
            }
        )
        self.metrics.texts[ip] = exporter_text(counts)


def test_a_rollout_steps_through_passes_and_a_breach_rolls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = Bench(monkeypatch)
    bench.apply(rts(version("1.0.0", 100), version("2.0.0", 0)))
    bench.pass_()
    assert bench.split() == {OLD: 100}
    # The commit a user pushes: where to end, and how to get there.
    bench.apply(rts(version("1.0.0", 0), version("2.0.0", 100), rollout=ROLLOUT))
    outcome = bench.pass_(10)
    assert bench.split() == {OLD: 95, NEW: 5}
    state = bench.rollout()
    assert (state["phase"], state["step"], state["summary"]) == (
        "Progressing",
        0,
        "Progressing 1/3 iris:2.0.0=5%",
    )
    assert [n.reason for n in outcome.notes] == ["RolloutStarted"]
    assert outcome.recheck is not None and outcome.recheck <= 10
    # The router pods of this step count requests; two pods, summed.
    bench.router_pods("10.1.0.1", {OLD: (950, 0), NEW: (60, 0)})
    bench.router_pods("10.1.0.2", {OLD: (940, 0), NEW: (50, 1)})
    bench.pass_(200)  # baking
    gates = bench.rollout()["gates"]
    assert gates == [{"gate": "maxErrorRatePercent", "value": 0.901, "limit": 5.0, "passed": True}]
    assert sorted(bench.metrics.asked[-2:]) == ["10.1.0.1", "10.1.0.2"]
    outcome = bench.pass_(320)  # bake over, 111 requests >= 100: next step
    assert bench.split() == {OLD: 75, NEW: 25}
    assert [n.reason for n in outcome.notes] == ["RolloutStepped"]
    config = bench.kube.get("v1", "ConfigMap", "ns", "svc-router")
    assert (
        config is not None
        and f"# rollout {bench.rollout()['id']} step 1" in (config["data"]["nginx.conf"])
    )
    # The new step's pods: 20% of the new version's answers are 5xx.
    bench.router_pods("10.1.0.3", {OLD: (750, 0), NEW: (200, 50)})
    outcome = bench.pass_(330)
    assert bench.split() == {OLD: 100}
    state = bench.rollout()
    assert state["phase"] == "RolledBack" and state["summary"] == "RolledBack at 2/3"
    [note] = outcome.notes
    assert note.warning and note.reason == "RolloutRolledBack"
    assert "maxErrorRatePercent 20 > 5" in note.message
    status = bench.kube.get("serving.inferops.dev/v1alpha1", "RealTimeService", "ns", "svc")
    assert status is not None and status["status"]["traffic"] == "iris:1.0.0=100,iris:2.0.0=0"
    [cond] = [c for c in status["status"]["conditions"] if c["type"] == "Rollout"]
    assert (cond["status"], cond["reason"]) == ("False", "RolledBack")
    assert "maxErrorRatePercent 20 > 5" in cond["message"]
    # It stays there until the spec changes.
    bench.pass_(5000)
    assert bench.split() == {OLD: 100}


def test_removing_the_rollout_from_the_spec_applies_the_spec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = Bench(monkeypatch)
    bench.apply(rts(version("1.0.0", 100), version("2.0.0", 0)))
    bench.pass_()
    bench.apply(rts(version("1.0.0", 0), version("2.0.0", 100), rollout=ROLLOUT))
    bench.pass_(10)
    bench.apply(rts(version("1.0.0", 100), version("2.0.0", 0)))  # git revert
    bench.pass_(20)
    assert bench.split() == {OLD: 100}
    obj = bench.kube.get("serving.inferops.dev/v1alpha1", "RealTimeService", "ns", "svc")
    assert obj is not None and obj["status"].get("rollout") is None
    assert "Rollout" not in [c["type"] for c in obj["status"]["conditions"]]


@pytest.mark.parametrize(
    ("buckets", "q", "expected"),
    [
        ({0.1: 50.0, 0.5: 100.0, float("inf"): 100.0}, 0.5, 0.1),
        ({0.1: 50.0, 0.5: 100.0, float("inf"): 100.0}, 0.75, 0.3),  # interpolated
        ({0.1: 0.0, 1.0: 90.0, float("inf"): 100.0}, 0.95, 1.0),  # in +Inf: the last bound
        ({}, 0.95, None),
    ],
)
def test_quantile_as_prometheus_computes_it(
    buckets: dict[float, float], q: float, expected: float | None
) -> None:
    got = quantile(buckets, q)
    assert got == expected or (
        got is not None and expected is not None and abs(got - expected) < 1e-9
    )


def test_the_parser_reads_only_split_requests_of_our_metrics() -> None:
    text = exporter_text({NEW: (10, 2)}) + 'other_total{version="iris:2.0.0"} 99\ngarbage line\n'
    counts = parse(text)[NEW].split
    assert (counts.requests, counts.errors) == (12, 2)
    assert counts.buckets[float("inf")] == 12


def test_a_shadow_step_mirrors_the_new_version_and_reads_its_agreement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from inferops.contract.router import RouterAgentConfig

    bench = Bench(monkeypatch)
    bench.apply(rts(version("1.0.0", 100), version("2.0.0", 0)))
    bench.pass_()
    shadow_first = {
        **ROLLOUT,
        "steps": [{"percent": 0, "shadowPercent": 50, "bakeSeconds": 60}, {"percent": 100}],
        "gates": {"minAgreementPercent": 95, "minRequests": 100},
    }
    bench.apply(rts(version("1.0.0", 0), version("2.0.0", 100), rollout=shadow_first))
    bench.pass_(10)
    assert bench.split() == {OLD: 100}  # the new version takes no share
    config = bench.kube.get("v1", "ConfigMap", "ns", "svc-router")
    assert config is not None
    agent = RouterAgentConfig.from_json(config["data"]["router.json"])
    assert [t.shadow_percent for t in agent.targets] == [None, 50]
    assert agent.pairing is not None and agent.pairing.output is None  # compared, not written
    # Its shadow answers and how they compared, as the agent exports them.
    metrics = RouterMetrics([OLD, NEW])
    for _ in range(150):
        metrics.observe(OLD, "split", "2xx", 0.01)
        metrics.observe_shadow(NEW, 200, 0.02)
    metrics.comparisons.labels(NEW, OLD, "same", "same").inc(120)
    metrics.comparisons.labels(NEW, OLD, "same", "different").inc(30)
    bench.router_pods("10.1.0.9", {})
    bench.metrics.texts["10.1.0.9"] = generate_latest(metrics.registry).decode()
    outcome = bench.pass_(20)
    state = bench.rollout()
    assert state["phase"] == "RolledBack", state
    assert "minAgreementPercent 80 < 95" in state["message"]
    assert [n.reason for n in outcome.notes] == ["RolloutRolledBack"]
    assert bench.split() == {OLD: 100}
    config = bench.kube.get("v1", "ConfigMap", "ns", "svc-router")
    assert config is not None
    assert RouterAgentConfig.from_json(config["data"]["router.json"]).pairing is None


def test_a_second_rollout_starts_clean_from_what_the_first_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """status.rollout is patched with a merge patch: ratios are lists (replaced whole), so
    the versions of the first rollout do not linger in the second one's ratios."""
    bench = Bench(monkeypatch)
    bench.apply(rts(version("1.0.0", 100), version("2.0.0", 0)))
    bench.pass_()
    quick = {
        **ROLLOUT,
        "steps": [{"percent": 100, "bakeSeconds": 0}],
        "gates": {"maxErrorRatePercent": 5, "minRequests": 0},
    }
    bench.apply(rts(version("1.0.0", 0), version("2.0.0", 100), rollout=quick))
    bench.pass_(10)
    bench.pass_(20)
    assert bench.rollout()["phase"] == "Succeeded" and bench.split() == {NEW: 100}
    third = {**ROLLOUT, "version": "iris:3.0.0", "steps": [{"percent": 10}, {"percent": 100}]}
    bench.apply(rts(version("2.0.0", 0), version("3.0.0", 100), rollout=third))
    bench.pass_(30)  # 3.0.0's instances are created: Pending
    bench.pass_(31)  # and ready: step 1
    state = bench.rollout()
    assert state["fromRatios"] == [
        {"version": NEW, "percent": 100},
        {"version": "iris:3.0.0", "percent": 0},
    ]
    assert state["ratios"] == [
        {"version": NEW, "percent": 90},
        {"version": "iris:3.0.0", "percent": 10},
    ]


def test_no_step_starts_before_the_new_versions_instances_are_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = Bench(monkeypatch)
    bench.apply(rts(version("1.0.0", 100), version("2.0.0", 0)))
    bench.pass_()
    third = {**ROLLOUT, "version": "iris:3.0.0", "steps": [{"percent": 10}, {"percent": 100}]}
    bench.apply(rts(version("1.0.0", 0), version("3.0.0", 100), rollout=third))
    bench.pass_(10, ready=False)  # 3.0.0's Deployment was just created
    state = bench.rollout()
    assert state["phase"] == "Pending" and bench.split() == {OLD: 100}
    assert "waiting for every instance of iris:3.0.0 to be ready" in state["message"]
    bench.pass_(40)  # ready: step 1, its clock from now
    state = bench.rollout()
    assert (state["phase"], state["stepStarted"]) == ("Progressing", "2026-11-30T09:00:40Z")
    assert bench.split() == {OLD: 90, "iris:3.0.0": 10}
