"""RealTimeService status from children: the phase table (pure)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from inferops.api.realtime import RealTimeServiceSpec
from inferops.reconcile.common import status_fields
from inferops.reconcile.realtime_status import Observed, traffic_summary
from inferops.reconcile.realtime_status import realtime_status as realtime_status_model
from tests.unit.rules_table import rts, version


def realtime_status(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """The status as the operator patches it."""
    return status_fields(realtime_status_model(*args, **kwargs))


NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


def deployment(ver: str, replicas: int, ready: int, deadline: bool = False) -> dict[str, Any]:
    conditions = (
        [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
        if deadline
        else []
    )
    return {
        "metadata": {
            "generation": 1,
            "labels": {
                "serving.inferops.dev/application": "iris",
                "serving.inferops.dev/version": ver,
            },
        },
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "conditions": conditions,
        },
    }


ROUTER_OK = {
    "metadata": {"generation": 1, "labels": {}},
    "spec": {"replicas": 2},
    "status": {"observedGeneration": 1, "updatedReplicas": 2, "readyReplicas": 2},
}
CRASHING = {
    "metadata": {"name": "p"},
    "status": {
        "containerStatuses": [
            {"name": "model", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
        ]
    },
}
PULLING = {
    "metadata": {"name": "p"},
    "status": {
        "containerStatuses": [
            {"name": "model", "image": "nope:1", "state": {"waiting": {"reason": "ErrImagePull"}}}
        ]
    },
}
SPEC = RealTimeServiceSpec.model_validate(
    rts(version("1.0.0", 70, computeNodes=2), version("2.0.0", 30))["spec"]
)
RUNNING = {"phase": "Running", "observedGeneration": 1}


@pytest.mark.parametrize(
    ("deps", "router", "pods", "old", "phase", "reason"),
    [
        (
            [deployment("1.0.0", 2, 2), deployment("2.0.0", 1, 1)],
            ROUTER_OK,
            [],
            None,
            "Running",
            "Running",
        ),
        (
            [deployment("1.0.0", 2, 1), deployment("2.0.0", 1, 1)],
            ROUTER_OK,
            [],
            None,
            "Deploying",
            "Deploying",
        ),
        (
            [deployment("1.0.0", 2, 2), deployment("2.0.0", 1, 1)],
            None,
            [],
            None,
            "Deploying",
            "Deploying",
        ),
        (
            [deployment("1.0.0", 2, 1), deployment("2.0.0", 1, 1)],
            ROUTER_OK,
            [],
            RUNNING,
            "Abnormal",
            "NodesNotReady",
        ),
        (
            [deployment("1.0.0", 2, 1), deployment("2.0.0", 1, 1)],
            ROUTER_OK,
            [CRASHING],
            RUNNING,
            "Abnormal",
            "CrashLoop",
        ),
        (
            [deployment("1.0.0", 2, 0, deadline=True), deployment("2.0.0", 1, 1)],
            ROUTER_OK,
            [],
            None,
            "Failed",
            "DeploymentTimeout",
        ),
        # Deploying, but the Ready condition names what holds it back
        (
            [deployment("1.0.0", 2, 1), deployment("2.0.0", 1, 1)],
            ROUTER_OK,
            [PULLING, CRASHING],
            None,
            "Deploying",
            "ImagePullBackOff",
        ),
        (
            [deployment("1.0.0", 2, 1), deployment("2.0.0", 1, 1)],
            ROUTER_OK,
            [CRASHING],
            None,
            "Deploying",
            "CrashLoop",
        ),
    ],
)
def test_phase_table(
    deps: list[Any], router: Any, pods: list[Any], old: Any, phase: str, reason: str
) -> None:
    status = realtime_status(
        SPEC,
        generation=1,
        old=old,
        observed=Observed(deps, router, pods),
        url="http://svc",
        now=NOW,
    )
    assert status["phase"] == phase
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["reason"] == reason
    if phase == "Deploying":  # Progressing keeps saying what is going on
        assert conditions["Progressing"]["reason"] == "Deploying"
    assert status["traffic"] == "iris:1.0.0=70,iris:2.0.0=30"


RESTARTING = {
    "metadata": {"name": "p"},
    "status": {
        "containerStatuses": [
            {
                "name": "model",
                "ready": False,
                "restartCount": 3,
                "state": {"running": {}},
                "lastState": {
                    "terminated": {
                        "exitCode": 1,
                        "reason": "Error",
                        "message": "starting\nmodel dir /nope: no config.json\n",
                    }
                },
            }
        ]
    },
}
READY_AFTER_RESTART = {
    "metadata": {"name": "q"},
    "status": {
        "containerStatuses": [
            {
                "name": "model",
                "ready": True,
                "restartCount": 1,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
            }
        ]
    },
}


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        ([CRASHING], "p/model: CrashLoopBackOff (0 restarts)"),
        # between two back-offs the container runs again: its last exit still names the cause
        (
            [RESTARTING],
            "p/model: restarted, not ready (3 restarts), last exit code 1 (Error): "
            "starting | model dir /nope: no config.json",
        ),
        ([READY_AFTER_RESTART], None),  # recovered: nothing to report
    ],
)
def test_a_failed_rollout_names_the_crash(pods: list[Any], expected: str | None) -> None:
    status = realtime_status(
        SPEC,
        generation=1,
        old=None,
        observed=Observed(
            [deployment("1.0.0", 2, 0, deadline=True), deployment("2.0.0", 1, 1)], ROUTER_OK, pods
        ),
        url=None,
        now=NOW,
    )
    assert status["phase"] == "Failed"
    if expected is None:
        assert status["message"] == "not ready within timeoutMinutes (20): 1/3 instances ready"
    else:
        assert status["message"].endswith(f"; {expected}"), status["message"]


def test_timeout_counts_from_the_start_of_the_rollout() -> None:
    deps = [deployment("1.0.0", 2, 0), deployment("2.0.0", 1, 0)]
    first = realtime_status(
        SPEC, generation=1, old=None, observed=Observed(deps, ROUTER_OK, []), url="u", now=NOW
    )
    assert first["phase"] == "Deploying"
    still = realtime_status(
        SPEC,
        generation=1,
        old=first,
        observed=Observed(deps, ROUTER_OK, []),
        url="u",
        now=NOW + datetime.timedelta(minutes=19),
    )
    assert still["phase"] == "Deploying"
    late = realtime_status(
        SPEC,
        generation=1,
        old=still,
        observed=Observed(deps, ROUTER_OK, []),
        url="u",
        now=NOW + datetime.timedelta(minutes=21),
    )
    assert late["phase"] == "Failed" and "timeoutMinutes (20)" in late["message"]
    # A new generation starts a new clock.
    again = realtime_status(
        SPEC,
        generation=2,
        old=late,
        observed=Observed(deps, ROUTER_OK, []),
        url="u",
        now=NOW + datetime.timedelta(minutes=22),
    )
    assert again["phase"] == "Deploying"


def test_stopped_and_per_version_nodes() -> None:
    spec = RealTimeServiceSpec.model_validate(rts(stopped=True)["spec"])
    status = realtime_status(
        spec,
        generation=1,
        old=None,
        observed=Observed([deployment("1.0.0", 0, 0)], ROUTER_OK, []),
        url="u",
        now=NOW,
    )
    assert status["phase"] == "Stopped" and status["ready"] == "0/0"
    running = realtime_status(
        SPEC,
        generation=1,
        old=None,
        observed=Observed([deployment("1.0.0", 2, 2), deployment("2.0.0", 1, 1)], ROUTER_OK, []),
        url="u",
        now=NOW,
    )
    assert [(v["readyNodes"], v["desiredNodes"]) for v in running["versions"]] == [(2, 2), (1, 1)]


def test_the_traffic_column_shows_a_shadow_with_its_sample() -> None:
    spec = RealTimeServiceSpec.model_validate(
        {
            "versions": [
                {
                    "application": "iris",
                    "version": "1.0.0",
                    "trafficRatio": 100,
                    "specification": "cpu.2u4g",
                },
                {
                    "application": "iris",
                    "version": "2.0.0",
                    "specification": "cpu.2u4g",
                    "shadow": {"samplePercent": 10},
                },
            ]
        }
    )
    assert traffic_summary(spec) == "iris:1.0.0=100,iris:2.0.0=shadow10%"


SHADOWED = RealTimeServiceSpec.model_validate(
    rts(version("1.0.0", 100), version("2.0.0", 0, shadow={"samplePercent": 10}))["spec"]
)


def shadow_pod(state: dict[str, Any]) -> dict[str, Any]:
    labels = {"serving.inferops.dev/application": "iris", "serving.inferops.dev/version": "2.0.0"}
    return {
        "metadata": {"name": "shadow-pod", "labels": labels},
        "status": {"containerStatuses": [{"name": "model", "image": "nope:2", "state": state}]},
    }


SHADOW_CRASHING = shadow_pod({"waiting": {"reason": "CrashLoopBackOff"}})
SHADOW_PULLING = shadow_pod({"waiting": {"reason": "ErrImagePull"}})


@pytest.mark.parametrize(
    ("deps", "pods", "old", "phase", "shadows", "detail"),
    [
        # A shadow answers no client: production ready is Running, whatever the shadow does.
        ([deployment("1.0.0", 1, 1), deployment("2.0.0", 1, 1)], [], None, "Running", "Ready", ""),
        (
            [deployment("1.0.0", 1, 1), deployment("2.0.0", 1, 0)],
            [SHADOW_PULLING],
            None,
            "Running",
            "ImagePullBackOff",
            "shadow iris:2.0.0: 0/1 instances ready; shadow-pod/model: image nope:2 cannot be pulled",
        ),
        (
            [deployment("1.0.0", 1, 1), deployment("2.0.0", 1, 0)],
            [SHADOW_CRASHING],
            RUNNING,
            "Running",
            "CrashLoop",
            "shadow iris:2.0.0: 0/1 instances ready; shadow-pod",
        ),
        (  # its deadline passed: still not the service's failure
            [deployment("1.0.0", 1, 1), deployment("2.0.0", 1, 0, deadline=True)],
            [],
            None,
            "Running",
            "NodesNotReady",
            "shadow iris:2.0.0: 0/1 instances ready",
        ),
        # Production is what the phase follows.
        (
            [deployment("1.0.0", 1, 0), deployment("2.0.0", 1, 1)],
            [],
            None,
            "Deploying",
            "Ready",
            "",
        ),
        (
            [deployment("1.0.0", 1, 0), deployment("2.0.0", 1, 1)],
            [],
            RUNNING,
            "Abnormal",
            "Ready",
            "",
        ),
    ],
)
def test_shadows_have_their_own_condition_and_never_set_the_phase(
    deps: list[Any], pods: list[Any], old: Any, phase: str, shadows: str, detail: str
) -> None:
    status = realtime_status(
        SHADOWED,
        generation=1,
        old=old,
        observed=Observed(deps, ROUTER_OK, pods),
        url="u",
        now=NOW,
    )
    assert status["phase"] == phase
    conditions = {c["type"]: c for c in status["conditions"]}
    shadow = conditions["ShadowsReady"]
    assert (shadow["status"], shadow["reason"]) == (
        "True" if shadows == "Ready" else "False",
        shadows,
    )
    assert status["ready"] == f"{deps[0]['status']['readyReplicas']}/1"  # production's nodes
    if shadows == "Ready":
        assert shadow["message"] == "every shadow version is ready"
        assert "shadow" not in status["message"]
    else:
        assert shadow["message"].startswith(detail), shadow["message"]
        assert status["message"].startswith(f"1/1 instances ready; {detail}"), status["message"]
        assert conditions["Ready"]["status"] == "True"  # production serves


def test_stopping_waits_for_the_shadow_and_a_removed_shadow_leaves_no_condition() -> None:
    stopped = SHADOWED.model_copy(update={"stopped": True})
    status = realtime_status(
        stopped,
        generation=2,
        old=None,
        observed=Observed([deployment("1.0.0", 0, 0), deployment("2.0.0", 0, 1)], ROUTER_OK, []),
        url="u",
        now=NOW,
    )
    assert (status["phase"], status["message"]) == ("Stopped", "stopping")
    assert "ShadowsReady" not in {c["type"] for c in status["conditions"]}
    shadowed = realtime_status(
        SHADOWED,
        generation=1,
        old=None,
        observed=Observed([deployment("1.0.0", 1, 1), deployment("2.0.0", 1, 1)], ROUTER_OK, []),
        url="u",
        now=NOW,
    )
    plain = RealTimeServiceSpec.model_validate(rts(version("1.0.0", 100))["spec"])
    later = realtime_status(
        plain,
        generation=2,
        old=shadowed,
        observed=Observed([deployment("1.0.0", 1, 1)], ROUTER_OK, []),
        url="u",
        now=NOW,
    )
    assert later["phase"] == "Running"
    assert "ShadowsReady" not in {c["type"] for c in later["conditions"]}
