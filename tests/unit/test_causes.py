"""What the pods of a service say about why it is not ready: one row per cause."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from inferops.reconcile.causes import QUOTE, WAITING_RECHECK, pod_causes, recheck_in, summary
from inferops.reconcile.common import Event, Outcome

NOW = datetime.datetime(2026, 1, 1, 0, 10, tzinfo=datetime.UTC)
MINUTES_AGO = {
    m: (NOW - datetime.timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ") for m in (0, 2, 4)
}
SECONDS_AGO_30 = (NOW - datetime.timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    *statuses: dict[str, Any],
    name: str = "svc-v1-abc",
    conditions: list[dict[str, Any]] | None = None,
    memory: str | None = None,
) -> dict[str, Any]:
    container = {
        "name": "model",
        **({"resources": {"limits": {"memory": memory}}} if memory else {}),
    }
    return {
        "metadata": {"name": name, "creationTimestamp": MINUTES_AGO[4]},
        "spec": {"containers": [container]},
        "status": {"conditions": conditions or [], "containerStatuses": list(statuses)},
    }


def container(**fields: Any) -> dict[str, Any]:
    return {"name": "model", "image": "registry.example/iris:1.0", "ready": False, **fields}


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"waiting": {"reason": reason, **({"message": message} if message else {})}}


CRASH_MESSAGE = "loading\nreading /models/iris\nline 3\nline 4\nValueError: bad model"
ROWS: dict[str, tuple[dict[str, Any], str | None, tuple[str, ...]]] = {
    "an image that cannot be pulled, with the image": (
        pod(container(state=waiting("ImagePullBackOff", 'Back-off pulling image "x"'))),
        "ImagePullBackOff",
        (
            "svc-v1-abc/model: image registry.example/iris:1.0 cannot be pulled",
            "ImagePullBackOff: Back-off",
        ),
    ),
    "the first pull error": (
        pod(container(state=waiting("ErrImagePull", "not found"))),
        "ImagePullBackOff",
        ("(ErrImagePull: not found)",),
    ),
    "a container that cannot be created (a missing Secret key)": (
        pod(container(state=waiting("CreateContainerConfigError", 'secret "s" not found'))),
        "ContainerConfigError",
        ('secret "s" not found',),
    ),
    "an OOM kill, with the limit": (
        pod(
            container(
                restartCount=2,
                state=waiting("CrashLoopBackOff"),
                lastState={"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
            ),
            memory="512Mi",
        ),
        "OOMKilled",
        ("killed for lack of memory (OOMKilled) at its memory limit 512Mi (2 restarts)",),
    ),
    "a crash loop, with the exit code and the last lines": (
        pod(
            container(
                restartCount=4,
                state=waiting("CrashLoopBackOff"),
                lastState={
                    "terminated": {"exitCode": 1, "reason": "Error", "message": CRASH_MESSAGE}
                },
            )
        ),
        "CrashLoop",
        (
            "svc-v1-abc/model: CrashLoopBackOff (4 restarts), last exit code 1 (Error): "
            "line 3 | line 4 | ValueError: bad model",
        ),
    ),
    "restarted and running again, not ready": (
        pod(
            container(
                restartCount=1,
                state={"running": {"startedAt": MINUTES_AGO[0]}},
                lastState={"terminated": {"exitCode": 2}},
            )
        ),
        "CrashLoop",
        ("svc-v1-abc/model: restarted, not ready (1 restarts), last exit code 2",),
    ),
    "no node, in the scheduler's words, with the pool and the time waited": (
        pod(
            conditions=[
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                    "lastTransitionTime": MINUTES_AGO[2],
                }
            ]
        ),
        "Unschedulable",
        (
            "svc-v1-abc: waiting for a node in pool gpu for 4m of timeoutMinutes 10: "
            "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        ),
    ),
    "a model loading for minutes, its startup probe not passing": (
        pod(container(started=False, state={"running": {"startedAt": MINUTES_AGO[4]}})),
        "StartupProbeFailing",
        ("running for 4m and its startup probe is not passing yet (timeoutMinutes 10)",),
    ),
    "a model the kubelet restarted for failing probes": (
        pod(
            container(
                started=False,
                restartCount=1,
                state={"running": {"startedAt": SECONDS_AGO_30}},
                lastState={"terminated": {"exitCode": 0, "reason": "Completed"}},
            )
        ),
        "StartupProbeFailing",
        (
            "restarted by the kubelet after its probes failed (1 restarts, last exit code 0); "
            "its startup probe is not passing yet (timeoutMinutes 10)",
        ),
    ),
    "a model that crashed while starting is a crash loop": (
        pod(
            container(
                started=False,
                restartCount=1,
                state={"running": {"startedAt": SECONDS_AGO_30}},
                lastState={"terminated": {"exitCode": 1, "reason": "Error"}},
            )
        ),
        "CrashLoop",
        ("restarted, not ready (1 restarts), last exit code 1 (Error)",),
    ),
    "a model starting for 30 s is not a cause yet": (
        pod(container(started=False, state={"running": {"startedAt": SECONDS_AGO_30}})),
        None,
        (),
    ),
    "a ready container is not a cause": (
        pod(
            container(
                ready=True,
                started=True,
                restartCount=3,
                state={"running": {}},
                lastState={"terminated": {"exitCode": 1}},
            )
        ),
        None,
        (),
    ),
    "a container ready again after an OOM kill is not a cause": (
        pod(
            container(
                ready=True,
                restartCount=1,
                state={"running": {}},
                lastState={"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
            )
        ),
        None,
        (),
    ),
    "a pod still being created is not a cause": (
        pod(container(state=waiting("ContainerCreating"))),
        None,
        (),
    ),
}


@pytest.mark.parametrize("name", ROWS)
def test_each_cause_is_named(name: str) -> None:
    given, reason, fragments = ROWS[name]
    causes = pod_causes([given], now=NOW, timeout_minutes=10, pool="gpu")
    assert [c.reason for c in causes] == ([reason] if reason else [])
    for fragment in fragments:
        assert fragment in causes[0].message


def test_the_most_pressing_cause_comes_first_and_three_are_shown() -> None:
    pods = [
        pod(container(started=False, state={"running": {"startedAt": MINUTES_AGO[4]}}), name="a"),
        pod(container(state=waiting("CrashLoopBackOff")), name="b"),
        pod(container(state=waiting("ErrImagePull")), name="c"),
        pod(container(state=waiting("ImagePullBackOff")), name="d"),
    ]
    causes = pod_causes(pods, now=NOW, timeout_minutes=10)
    assert [c.reason for c in causes] == [
        "ImagePullBackOff",
        "ImagePullBackOff",
        "CrashLoop",
        "StartupProbeFailing",
    ]
    assert summary(causes).count("; ") == 2 and "StartupProbeFailing" not in summary(causes)


def test_what_a_pod_says_is_quoted_bounded_and_on_one_line() -> None:
    hostile = "x" * 5000 + "\n\x1b[31m"
    causes = pod_causes(
        [pod(container(state=waiting("ErrImagePull", hostile), image=None))],
        now=NOW,
        timeout_minutes=10,
    )
    assert len(causes[0].message) < QUOTE + 120
    assert "\n" not in causes[0].message and "\x1b" not in causes[0].message


def test_odd_pods_give_no_traceback() -> None:
    odd = {
        "metadata": {"name": "p"},
        "status": {
            "containerStatuses": [
                {"name": "m", "state": {"running": {"startedAt": "yesterday"}}, "started": False}
            ]
        },
    }
    assert pod_causes([odd], now=NOW, timeout_minutes=10) == []


def test_a_new_cause_is_posted_once_as_a_warning() -> None:
    obj = {"kind": "RealTimeService", "metadata": {"name": "svc"}}
    held = Outcome(
        obj,
        "Deploying",
        "Deploying",
        "p/model: image x",
        reason="ImagePullBackOff",
        old_reason="Deploying",
    )
    assert held.events() == [Event("ImagePullBackOff", "p/model: image x", warning=True)]
    still = Outcome(
        obj,
        "Deploying",
        "Deploying",
        "p/model: image x",
        reason="ImagePullBackOff",
        old_reason="ImagePullBackOff",
    )
    assert still.events() == []
    # a phase change tells the cause in its own event
    failed = Outcome(
        obj,
        "Deploying",
        "Failed",
        "timeout; p/model: x",
        reason="DeploymentTimeout",
        old_reason="ImagePullBackOff",
    )
    assert [e.reason for e in failed.events()] == ["Failed"]


def test_time_alone_brings_the_next_look() -> None:
    starting = pod(container(started=False, state={"running": {"startedAt": SECONDS_AGO_30}}))
    assert recheck_in([starting], NOW) == 31.0  # when its grace ends: then it is a cause
    waiting = pod(conditions=[{"type": "PodScheduled", "status": "False"}])
    assert recheck_in([starting, waiting], NOW) == 31.0
    assert recheck_in([waiting], NOW) == WAITING_RECHECK  # the time waited, in its message
    loading = pod(container(started=False, state={"running": {"startedAt": MINUTES_AGO[4]}}))
    assert recheck_in([loading], NOW) is None  # named already; events or the deadline next
    assert recheck_in([pod(container(ready=True, started=True))], NOW) is None
