"""Why a workload is not ready, in words a user can act on.

Pure readers of the pods a service owns (as `reconcile.trim` keeps them). Each cause has
the reason the Ready condition carries and a message naming the pod, the container and
what Kubernetes said: the image that cannot be pulled, the scheduler's own words with the
pool, the memory limit an OOM hit, a crash's exit code and last lines. Slow is told apart
from broken: a pod waiting for a node, or a model still loading, says for how long
against timeoutMinutes.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inferops.api import phases
from inferops.reconcile.conditions import parse_time

Obj = Mapping[str, Any]
PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName"})
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
# How a container the kubelet stopped exits: cleanly on SIGTERM, 143, or SIGKILL, 137.
PROBE_KILL_CODES = frozenset({0, 137, 143})
# A model may take this long to pass its startup probe before it is named as a cause.
STARTUP_GRACE = datetime.timedelta(seconds=60)
# Lines of a crashed container's termination message shown, and characters per quote.
LAST_LINES = 3
QUOTE = 300
# Causes shown in a message.
SHOWN = 3
# A pod waiting for a node is looked at again this often (the time waited in its message).
WAITING_RECHECK = 60.0
# Most pressing first: the first cause found names the Ready condition's reason.
ORDER = (
    phases.IMAGE_PULL_BACK_OFF,
    phases.CONTAINER_CONFIG_ERROR,
    phases.OOM_KILLED,
    phases.CRASH_LOOP,
    phases.UNSCHEDULABLE,
    phases.STARTUP_PROBE_FAILING,
)


@dataclass(frozen=True)
class Cause:
    reason: str
    message: str


def _quote(text: Any) -> str:
    """What a pod or the kubelet said, on one line, printable, bounded."""
    flat = "".join(ch for ch in " ".join(str(text or "").split()) if ch.isprintable())
    return flat if len(flat) <= QUOTE else flat[: QUOTE - 3] + "..."


def _elapsed(since: Any, now: datetime.datetime) -> str:
    start = parse_time(since)
    if start is None:
        return "?"
    # Whole minutes past the first: the message then changes once a minute (a status write
    # each time), and `recheck_in` brings the pass that updates it.
    seconds = max(0, int((now - start).total_seconds()))
    return f"{seconds // 60}m" if seconds >= 60 else f"{seconds}s"


def _last_lines(message: Any) -> str:
    lines = [line.strip() for line in str(message or "").splitlines() if line.strip()]
    return " | ".join(_quote(line) for line in lines[-LAST_LINES:])


def _exit(terminated: Obj) -> str:
    text = f"exit code {terminated.get('exitCode')}"
    if terminated.get("reason"):
        text += f" ({terminated['reason']})"
    last = _last_lines(terminated.get("message"))
    return f"{text}: {last}" if last else text


def _memory_limits(pod: Obj) -> dict[str, str]:
    found = {}
    for container in (pod.get("spec") or {}).get("containers") or ():
        memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        if memory:
            found[str(container.get("name"))] = str(memory)
    return found


def _container_cause(
    where: str, status: Obj, limit: str | None, now: datetime.datetime, timeout: int
) -> Cause | None:
    state = status.get("state") or {}
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason")
    terminated = state.get("terminated") or (status.get("lastState") or {}).get("terminated")
    restarts = int(status.get("restartCount") or 0)
    if reason in PULL_REASONS:
        detail = _quote(waiting.get("message")) or reason
        return Cause(
            phases.IMAGE_PULL_BACK_OFF,
            f"{where}: image {status.get('image') or '?'} cannot be pulled ({reason}: {detail})",
        )
    if reason in CONFIG_REASONS:
        return Cause(
            phases.CONTAINER_CONFIG_ERROR,
            f"{where}: cannot be created ({reason}: {_quote(waiting.get('message'))})",
        )
    if terminated and terminated.get("reason") == "OOMKilled" and not status.get("ready"):
        at = f" at its memory limit {limit}" if limit else ""
        return Cause(
            phases.OOM_KILLED,
            f"{where}: killed for lack of memory (OOMKilled){at} ({restarts} restarts)",
        )
    running = state.get("running") or {}
    if (
        running
        and terminated
        and restarts > 0
        and status.get("started") is False
        and terminated.get("exitCode") in PROBE_KILL_CODES
    ):
        # Stopped by the kubelet (a clean exit on SIGTERM, or SIGKILL after the grace
        # period), not by itself: its probes failed; now it is starting over.
        return Cause(
            phases.STARTUP_PROBE_FAILING,
            f"{where}: restarted by the kubelet after its probes failed ({restarts} restarts, "
            f"last exit code {terminated.get('exitCode')}); its startup probe is not "
            f"passing yet (timeoutMinutes {timeout})",
        )
    if reason == "CrashLoopBackOff" or (terminated and restarts > 0 and not status.get("ready")):
        last = f", last {_exit(terminated)}" if terminated else ""
        what = reason or "restarted, not ready"
        return Cause(phases.CRASH_LOOP, f"{where}: {what} ({restarts} restarts){last}")
    started = parse_time(running.get("startedAt"))
    if running and status.get("started") is False and started and now - started > STARTUP_GRACE:
        return Cause(
            phases.STARTUP_PROBE_FAILING,
            f"{where}: running for {_elapsed(running.get('startedAt'), now)} and its startup "
            f"probe is not passing yet (timeoutMinutes {timeout})",
        )
    return None


def _unscheduled(pod: Obj) -> Obj | None:
    for condition in (pod.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            found: Obj = condition
            return found
    return None


def pod_causes(
    pods: Sequence[Obj], *, now: datetime.datetime, timeout_minutes: int, pool: str | None = None
) -> list[Cause]:
    """Every cause the pods show, most pressing first (stable within one reason)."""
    found = []
    for pod in pods:
        name = pod["metadata"]["name"]
        unscheduled = _unscheduled(pod)
        if unscheduled is not None:
            in_pool = f" in pool {pool}" if pool else ""
            # Since the pod was made: the scheduler moves its condition at every retry.
            since = pod["metadata"].get("creationTimestamp") or unscheduled.get(
                "lastTransitionTime"
            )
            found.append(
                Cause(
                    phases.UNSCHEDULABLE,
                    f"{name}: waiting for a node{in_pool} for {_elapsed(since, now)} of "
                    f"timeoutMinutes {timeout_minutes}: "
                    f"{_quote(unscheduled.get('message')) or unscheduled.get('reason')}",
                )
            )
            continue
        limits = _memory_limits(pod)
        for status in (pod.get("status") or {}).get("containerStatuses") or ():
            container = str(status.get("name"))
            cause = _container_cause(
                f"{name}/{container}", status, limits.get(container), now, timeout_minutes
            )
            if cause is not None:
                found.append(cause)
    return sorted(found, key=lambda c: ORDER.index(c.reason))


def summary(causes: Sequence[Cause]) -> str:
    """The first few causes as one message part ('' when none)."""
    return "; ".join(c.message for c in causes[:SHOWN])


def recheck_in(pods: Sequence[Obj], now: datetime.datetime) -> float | None:
    """Seconds until what the pods say changes with time alone (no event comes then): a
    model still within its startup grace, the time a pod has waited for a node."""
    waits = []
    for pod in pods:
        if _unscheduled(pod) is not None:
            waits.append(WAITING_RECHECK)
            continue
        for status in (pod.get("status") or {}).get("containerStatuses") or ():
            running = (status.get("state") or {}).get("running") or {}
            started = parse_time(running.get("startedAt"))
            if started and status.get("started") is False:
                left = (started + STARTUP_GRACE - now).total_seconds()
                if left >= 0:
                    waits.append(left + 1)
    return min(waits) if waits else None
