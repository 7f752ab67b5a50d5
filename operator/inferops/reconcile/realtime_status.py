"""The status of a RealTimeService, from its spec and what its children report.

Pure: Deployments and pods in, the status subresource out. Phases:
Deploying until every version has its ready nodes and the router is ready, then Running;
Abnormal when a running service loses ready nodes or its pods crash-loop; Failed on an
invalid spec or when timeoutMinutes passes without readiness; Stopped when stopped.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inferops.api.names import LABEL_APPLICATION, LABEL_VERSION
from inferops.api.realtime import RealTimeServiceSpec
from inferops.reconcile.conditions import format_time, lifecycle, rollout_start

Obj = Mapping[str, Any]
CRASH_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "InvalidImageName",
    }
)


@dataclass(frozen=True)
class Observed:
    """What the children say, gathered by the handler."""

    model_deployments: Sequence[Obj]
    router: Obj | None
    pods: Sequence[Obj]
    router_needed: bool = True


def _ready(deployment: Obj) -> int:
    return int((deployment.get("status") or {}).get("readyReplicas") or 0)


def _rolled_out(deployment: Obj) -> bool:
    status = deployment.get("status") or {}
    spec_replicas = int((deployment.get("spec") or {}).get("replicas") or 0)
    generation = deployment.get("metadata", {}).get("generation")
    return (
        status.get("observedGeneration") == generation
        and int(status.get("updatedReplicas") or 0) >= spec_replicas
        and int(status.get("readyReplicas") or 0) >= spec_replicas
    )


def _deadline_exceeded(deployment: Obj) -> bool:
    for cond in (deployment.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return True
    return False


def crash_looping(pods: Sequence[Obj]) -> list[str]:
    """'pod/container: why' for containers stuck restarting or unable to start: the kubelet's
    waiting reason and, once a container has exited and restarted, its last exit (code,
    reason, the last line of its termination message). The last exit also holds between
    two back-offs, while the kubelet shows the restarted container running, not ready."""
    found = []
    for pod in pods:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        for status in statuses:
            where = f"{pod['metadata']['name']}/{status.get('name')}"
            reason = ((status.get("state") or {}).get("waiting") or {}).get("reason")
            last = (status.get("lastState") or {}).get("terminated")
            if reason in CRASH_REASONS:
                found.append(f"{where}: {reason}{_last_exit(last)}")
            elif last and int(status.get("restartCount") or 0) > 0 and not status.get("ready"):
                found.append(f"{where}: restarting{_last_exit(last)}")
    return found


def _last_exit(terminated: Obj | None) -> str:
    if not terminated:
        return ""
    text = f", last exit code {terminated.get('exitCode')}"
    if terminated.get("reason"):
        text += f" ({terminated['reason']})"
    lines = [line for line in str(terminated.get("message") or "").splitlines() if line.strip()]
    if lines:
        text += f": {lines[-1].strip()[:200]}"
    return text


def traffic_summary(spec: RealTimeServiceSpec) -> str:
    return ",".join(f"{v.application}:{v.version}={v.traffic_ratio}" for v in spec.versions)


def realtime_status(
    spec: RealTimeServiceSpec,
    *,
    generation: int | None,
    old: Mapping[str, Any] | None,
    observed: Observed,
    url: str | None,
    now: datetime.datetime,
) -> dict[str, Any]:
    old = old or {}
    versions: list[dict[str, Any]] = []
    for entry in spec.versions:
        mine = [
            d
            for d in observed.model_deployments
            if d["metadata"]["labels"].get(LABEL_APPLICATION) == entry.application
            and d["metadata"]["labels"].get(LABEL_VERSION) == entry.version
        ]
        versions.append(
            {
                "application": entry.application,
                "version": entry.version,
                "trafficRatio": entry.traffic_ratio,
                "readyNodes": sum(_ready(d) for d in mine),
                "desiredNodes": 0 if spec.stopped else entry.compute_nodes,
            }
        )
    ready_nodes = sum(v["readyNodes"] for v in versions)
    desired_nodes = sum(v["desiredNodes"] for v in versions)
    router_ok = not observed.router_needed or (
        observed.router is not None and _rolled_out(observed.router)
    )
    all_rolled = all(_rolled_out(d) for d in observed.model_deployments)
    all_ready = (
        all(v["readyNodes"] >= v["desiredNodes"] for v in versions) and all_rolled and router_ok
    )
    crashes = crash_looping(observed.pods)
    was_running = (
        old.get("phase") in ("Running", "Abnormal") and old.get("observedGeneration") == generation
    )

    started = rollout_start(old.get("conditions"), generation)
    since = started or now
    timeout = datetime.timedelta(minutes=max(v.timeout_minutes for v in spec.versions))
    timed_out = now - since > timeout or any(
        _deadline_exceeded(d) for d in observed.model_deployments
    )

    if spec.stopped:
        phase, ready, reason = "Stopped", False, "Stopped"
        message = "stopped: scaled to zero" if ready_nodes == 0 else "stopping"
        progressing_state: bool = ready_nodes > 0
    elif all_ready:
        phase, ready, reason, message = (
            "Running",
            True,
            "Running",
            f"{ready_nodes}/{desired_nodes} instances ready",
        )
        progressing_state = False
    elif was_running:
        phase, ready, reason = "Abnormal", False, "NodesNotReady"
        message = f"{ready_nodes}/{desired_nodes} instances ready"
        if crashes:
            reason, message = "CrashLoop", f"{message}; {'; '.join(crashes[:3])}"
        progressing_state = False
    elif timed_out and old.get("phase") != "Running":
        phase, ready, reason = "Failed", False, "DeploymentTimeout"
        message = (
            f"not ready within timeoutMinutes ({int(timeout.total_seconds() // 60)}): "
            f"{ready_nodes}/{desired_nodes} instances ready"
        )
        if crashes:
            message += f"; {'; '.join(crashes[:3])}"
        progressing_state = False
    else:
        phase, ready, reason = "Deploying", False, "Deploying"
        message = f"{ready_nodes}/{desired_nodes} instances ready"
        if not router_ok:
            message += "; router not ready"
        if crashes:
            message += f"; {'; '.join(crashes[:3])}"
        progressing_state = True

    conditions = lifecycle(
        old.get("conditions"),
        ready=ready,
        progressing=progressing_state,
        reason=reason,
        message=message,
        generation=generation,
        timestamp=format_time(now),
        progressing_reason="Deploying" if progressing_state else reason,
        new_rollout=started is None,
    )
    return {
        "phase": phase,
        **({"url": url} if url else {}),
        "traffic": traffic_summary(spec),
        "ready": f"{ready_nodes}/{desired_nodes}",
        "versions": versions,
        "conditions": conditions,
        "observedGeneration": generation,
        "message": message,
    }


def failed_status(
    old: Mapping[str, Any] | None,
    generation: int | None,
    *,
    reason: str,
    message: str,
    now: datetime.datetime,
) -> dict[str, Any]:
    """Failed with a reason and a message naming the field (spec invalid, quota...)."""
    conditions = lifecycle(
        (old or {}).get("conditions"),
        ready=False,
        progressing=False,
        reason=reason,
        message=message,
        generation=generation,
        timestamp=format_time(now),
    )
    return {
        "phase": "Failed",
        "conditions": conditions,
        "observedGeneration": generation,
        "message": message,
    }
