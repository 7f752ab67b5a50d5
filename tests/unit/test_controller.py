"""The controller's bookkeeping around a pass: which objects an event concerns, the
follow-ups a pass queues (deadline, cluster-blocked retry, error back-off)."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from inferops.api.catalog import default_catalog
from inferops.api.names import KIND_APPLICATION, KIND_BATCH, KIND_REALTIME
from inferops.handlers import controller as controller_module
from inferops.handlers.cache import Caches, view_scopes
from inferops.handlers.controller import DEADLINE_MARGIN, ERROR_DELAYS, RETRY_SECONDS, Controller
from inferops.handlers.triggers import followers
from inferops.handlers.workqueue import Key
from inferops.reconcile.common import Outcome
from inferops.reconcile.conditions import until_deadline
from inferops.reconcile.kube import KubeError
from inferops.reconcile.view import View, view_of
from tests.unit.fake_kube import FakeKube
from tests.unit.rules_table import bs, rts, version
from tests.unit.test_reconcile_table import APP, NAMESPACE, NS, SVC, placed

Obj = dict[str, Any]
QUOTA_BLOCKED = {"conditions": [{"type": "Ready", "status": "False", "reason": "QuotaExceeded"}]}


def objects_of(*objs: Obj) -> Any:
    return lambda kind: [o for o in objs if o["kind"] == kind]


@pytest.mark.parametrize(
    ("siblings", "kind", "deleted", "name", "expected"),
    [
        # An application: every service naming it, of both kinds, and no other.
        (
            [placed(rts(name="a")), placed(rts(version("1.0.0", 100), name="b")), placed(bs())],
            KIND_APPLICATION,
            False,
            "iris",
            [(KIND_REALTIME, NS, "a"), (KIND_REALTIME, NS, "b"), (KIND_BATCH, NS, "job")],
        ),
        ([placed(rts(name="a"))], KIND_APPLICATION, True, "other", []),
        # A deleted service: its quota-blocked siblings take the place it freed.
        (
            [placed(rts(name="a")), placed(rts(name="b"), status=QUOTA_BLOCKED)],
            KIND_REALTIME,
            True,
            "gone",
            [(KIND_REALTIME, NS, "b")],
        ),
        # A changed service concerns nobody else.
        ([placed(rts(name="b"), status=QUOTA_BLOCKED)], KIND_REALTIME, False, "a", []),
    ],
)
def test_followers(
    siblings: list[Obj], kind: str, deleted: bool, name: str, expected: list[Key]
) -> None:
    assert followers(objects_of(*siblings), kind, deleted, NS, name) == expected


class FakeCaches(Caches):
    """Caches that view everything a FakeKube holds."""

    def __init__(self, kube: FakeKube) -> None:
        super().__init__()
        self.kube = kube

    def view(self, kind: str, namespace: str, name: str) -> View:
        return view_of(self.kube.objects.values(), view_scopes(kind, namespace, name))


def run_pass(
    kube: FakeKube, key: Key, monkeypatch: pytest.MonkeyPatch
) -> tuple[Controller, list[Outcome | None], float | None]:
    """One pass; the controller, what it reported, and when it comes back (if it does)."""
    reported: list[Outcome | None] = []
    monkeypatch.setattr(controller_module.events, "report", reported.append)

    async def scenario() -> tuple[Controller, float | None]:
        ctl = Controller(kube, default_catalog(), caches=FakeCaches(kube))
        await ctl.handle(key)
        timers = ctl.queue._timers
        loop = asyncio.get_running_loop()
        due = timers[key][0] - loop.time() if key in timers else None
        ctl.queue.close()
        return ctl, due

    ctl, due = asyncio.run(scenario())
    return ctl, reported, due


def test_a_deploying_service_comes_back_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FakeKube([NAMESPACE, APP, SVC])
    _, reported, due = run_pass(kube, (KIND_REALTIME, NS, "svc"), monkeypatch)
    assert reported[0] is not None and reported[0].phase == "Deploying"
    # At its timeoutMinutes (20, the default), not before: its children's events bring
    # the passes until then.
    deadline = 20 * 60 + DEADLINE_MARGIN
    assert due is not None and deadline - 5 < due <= deadline


def test_a_quota_blocked_service_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    full = {
        **NAMESPACE,
        "metadata": {
            "name": NS,
            "annotations": {"serving.inferops.dev/quota-realtime-services": "0"},
        },
    }
    kube = FakeKube([full, APP, SVC])
    _, reported, due = run_pass(kube, (KIND_REALTIME, NS, "svc"), monkeypatch)
    assert reported[0] is not None and reported[0].reason == "QuotaExceeded"
    assert due is not None and RETRY_SECONDS - 1 < due <= RETRY_SECONDS


def status_of(kube: FakeKube) -> Obj:
    found: Obj = kube.objects[("serving.inferops.dev/v1alpha1", KIND_REALTIME, NS, "svc")]
    return dict(found.get("status") or {})


def ready(status: Obj) -> Obj:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


def test_a_failing_pass_backs_off_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(FakeKube):
        def apply(self, obj: Any) -> Obj:
            raise RuntimeError("the builder met something new")

    kube = Broken([NAMESPACE, APP, SVC])
    ctl, reported, due = run_pass(kube, (KIND_REALTIME, NS, "svc"), monkeypatch)
    assert ctl.failures == {(KIND_REALTIME, NS, "svc"): 1}
    assert due is not None and due <= ERROR_DELAYS[0]
    # never silent: a new service gets a status at once, and an Event
    status = status_of(kube)
    assert status["phase"] == "Deploying"
    assert ready(status)["reason"] == "ReconcileError"
    assert status["message"] == "RuntimeError: the builder met something new; retrying in 1 s"
    # the phase's first Event tells the error, as a Warning
    assert [(e.reason, e.warning) for o in reported if o for e in o.events()] == [
        ("Deploying", True)
    ]


def test_a_child_the_api_server_refuses_is_named_with_its_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Full(FakeKube):
        def apply(self, obj: Any) -> Obj:
            if obj["kind"] == "Service":
                raise KubeError(500, "failed to allocate a serviceIP: range is full")
            return super().apply(obj)

    running = placed(rts(), status={"phase": "Running", "observedGeneration": 1})
    kube = Full([NAMESPACE, APP, running])
    _, reported, _ = run_pass(kube, (KIND_REALTIME, NS, "svc"), monkeypatch)
    status = status_of(kube)
    # it serves what was applied before, not its spec
    assert status["phase"] == "Abnormal"
    assert ready(status)["reason"] == "ChildRefused"
    assert status["message"].startswith("the API server refused Service/")
    assert (
        "(500): failed to allocate a serviceIP: range is full; retrying in 1 s" in status["message"]
    )
    assert [e.reason for o in reported if o for e in o.events()] == ["Abnormal"]


def test_a_gone_object_is_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    _, reported, due = run_pass(FakeKube([NAMESPACE]), (KIND_REALTIME, NS, "svc"), monkeypatch)
    assert reported == [None] and due is None


@pytest.mark.parametrize(
    ("spec", "conditions", "expected"),
    [
        # No rollout yet: the whole timeout from now.
        ({"timeoutMinutes": 3}, [], 180.0),
        ({}, [], 1200.0),  # the default, 20 minutes
        # A rollout of this generation started a minute ago.
        (
            {"timeoutMinutes": 3},
            [
                {
                    "type": "Progressing",
                    "status": "True",
                    "observedGeneration": 1,
                    "lastTransitionTime": "2026-01-01T00:09:00Z",
                }
            ],
            120.0,
        ),
        # Long past: due now.
        (
            {"timeoutMinutes": 3},
            [
                {
                    "type": "Progressing",
                    "status": "True",
                    "observedGeneration": 1,
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                }
            ],
            0.0,
        ),
        ({"timeoutMinutes": "soon"}, [], 1200.0),  # not a number: the default
    ],
)
def test_until_deadline(spec: Obj, conditions: list[Obj], expected: float) -> None:
    obj = {"metadata": {"generation": 1}, "spec": spec, "status": {"conditions": conditions}}
    at = datetime.datetime(2026, 1, 1, 0, 10, tzinfo=datetime.UTC)
    assert until_deadline(obj, at) == expected


def test_time_alone_brings_a_pass_sooner_than_the_deadline() -> None:
    obj = placed(rts())
    deploying = Outcome(obj, None, "Deploying", reason="Deploying", recheck=31.0)
    assert controller_module.follow_up(deploying) == 31.0
    running = Outcome(obj, None, "Running", reason="Running", recheck=60.0)
    assert controller_module.follow_up(running) == 60.0
    assert controller_module.follow_up(Outcome(obj, None, "Running", reason="Running")) is None
