"""What the workloads of a service say about its health: rollouts, deadlines, crashes.

Pure readers of Deployments, Jobs and pods as the API server returns them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Obj = Mapping[str, Any]
CRASHES_SHOWN = 3
CRASH_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "InvalidImageName",
    }
)


def ready_replicas(deployment: Obj) -> int:
    return int((deployment.get("status") or {}).get("readyReplicas") or 0)


def rolled_out(deployment: Obj) -> bool:
    """The Deployment's current generation is observed, updated and ready everywhere."""
    status = deployment.get("status") or {}
    spec_replicas = int((deployment.get("spec") or {}).get("replicas") or 0)
    generation = deployment.get("metadata", {}).get("generation")
    return (
        status.get("observedGeneration") == generation
        and int(status.get("updatedReplicas") or 0) >= spec_replicas
        and int(status.get("readyReplicas") or 0) >= spec_replicas
    )


def deadline_exceeded(deployment: Obj) -> bool:
    for cond in (deployment.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return True
    return False


def job_condition(job: Obj | None, kind: str) -> Obj | None:
    """The Job's condition of this type when it is True."""
    for cond in ((job or {}).get("status") or {}).get("conditions") or ():
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


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


def crash_summary(pods: Sequence[Obj]) -> str:
    """The first few crashing containers, as one status message part ('' when none)."""
    return "; ".join(crash_looping(pods)[:CRASHES_SHOWN])


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
