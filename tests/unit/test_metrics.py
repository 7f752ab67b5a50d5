"""The operator's service metrics: how many services stand in each phase for each reason,
and how often a reason is reached."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from inferops.handlers import events, metrics
from inferops.handlers.metrics import ServiceStates
from inferops.reconcile.common import Outcome


def exported(states: ServiceStates) -> list[str]:
    registry = CollectorRegistry()
    registry.register(states)
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if line.startswith("inferops_services{")]


def test_services_are_counted_by_kind_phase_and_reason() -> None:
    states = ServiceStates()
    states.set(("RealTimeService", "a", "one"), "Deploying", "ImagePullBackOff")
    states.set(("RealTimeService", "b", "two"), "Deploying", "ImagePullBackOff")
    states.set(("BatchService", "a", "job"), "Running", "Running")
    states.set(("RealTimeService", "a", "three"), "Running", "Running")
    states.set(("RealTimeService", "a", "three"), "Abnormal", "CrashLoop")  # moved on
    assert exported(states) == [
        'inferops_services{kind="BatchService",phase="Running",reason="Running"} 1.0',
        'inferops_services{kind="RealTimeService",phase="Abnormal",reason="CrashLoop"} 1.0',
        'inferops_services{kind="RealTimeService",phase="Deploying",reason="ImagePullBackOff"} 2.0',
    ]
    states.drop(("RealTimeService", "a", "one"))
    states.drop(("RealTimeService", "a", "gone"))  # never seen: nothing to do
    assert 'reason="ImagePullBackOff"} 1.0' in exported(states)[2]


def outcome(phase: str, reason: str, old_reason: str | None, name: str = "svc") -> Outcome:
    obj = {
        "apiVersion": "serving.inferops.dev/v1alpha1",
        "kind": "RealTimeService",
        "metadata": {"name": name, "namespace": "team", "uid": "u"},
    }
    return Outcome(obj, "Deploying", phase, "m", reason=reason, old_reason=old_reason)


def test_a_pass_reported_moves_the_gauge_and_counts_a_new_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    posted: list[Any] = []
    monkeypatch.setattr(events.kopf, "info", lambda *a, **k: posted.append(k))
    monkeypatch.setattr(events.kopf, "warn", lambda *a, **k: posted.append(k))
    states = ServiceStates()
    monkeypatch.setattr(events, "SERVICES", states)
    counter = metrics.REASONS.labels("RealTimeService", "Unschedulable")
    before = counter._value.get()
    events.report(outcome("Deploying", "Unschedulable", "Deploying"))
    events.report(outcome("Deploying", "Unschedulable", "Unschedulable"))  # no new reason
    assert counter._value.get() == before + 1
    assert states.counts() == {("RealTimeService", "Deploying", "Unschedulable"): 1}
    assert [p["reason"] for p in posted] == ["Unschedulable"]
