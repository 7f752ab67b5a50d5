"""The status of a BatchService, from its Job and the workers' termination messages.

Workers report their counts in their container's termination message (JSON), so progress
needs no access to object storage: it counts the indexes that have finished.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

from inferops.api.batch import BatchServiceSpec
from inferops.reconcile.conditions import format_time, lifecycle, rollout_start
from inferops.reconcile.realtime_status import crash_looping

Obj = Mapping[str, Any]
WORKER = "worker"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def _job_condition(job: Obj | None, kind: str) -> Obj | None:
    for cond in ((job or {}).get("status") or {}).get("conditions") or ():
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def _worker_state(pod: Obj) -> Obj:
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        if status.get("name") == WORKER:
            return dict(status.get("state") or {})
    return {}


def worker_reports(pods: Sequence[Obj]) -> dict[str, dict[str, Any]]:
    """index -> the summary of its last successful worker (one per index, no double count)."""
    reports: dict[str, dict[str, Any]] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or ""):
        terminated = _worker_state(pod).get("terminated") or {}
        if terminated.get("exitCode") != 0:
            continue
        index = (pod["metadata"].get("annotations") or {}).get(INDEX_ANNOTATION, "")
        try:
            summary = json.loads(terminated.get("message") or "")
        except ValueError:
            continue
        if isinstance(summary, dict):
            reports[index] = summary
    return reports


def _count(reports: Mapping[str, Mapping[str, Any]], key: str) -> int:
    values = (r.get(key) for r in reports.values())
    return sum(v for v in values if isinstance(v, int) and not isinstance(v, bool))


def batch_status(
    spec: BatchServiceSpec,
    *,
    generation: int | None,
    old: Mapping[str, Any] | None,
    job: Obj | None,
    pods: Sequence[Obj],
    task: str,
    now: datetime.datetime,
) -> dict[str, Any]:
    old = old or {}
    reports = worker_reports(pods)
    total, succeeded, failed = (_count(reports, k) for k in ("total", "succeeded", "failed"))
    manifests = sorted(
        {m for r in reports.values() for m in r.get("manifests") or [] if isinstance(m, str)}
    )
    running = any(
        (p.get("status") or {}).get("phase") == "Running" and "running" in _worker_state(p)
        for p in pods
    )
    complete, job_failed = _job_condition(job, "Complete"), _job_condition(job, "Failed")
    crashes = crash_looping(pods)
    started = rollout_start(old.get("conditions"), generation)
    since = started or now
    timeout = datetime.timedelta(minutes=spec.timeout_minutes)

    done = f"{succeeded + failed}/{total} sources" if reports else "no worker finished yet"
    if complete is not None:
        phase, reason, message = (
            "Completed",
            "Completed",
            f"{succeeded} succeeded, {failed} failed of {total} sources",
        )
    elif job_failed is not None:
        phase, reason = "Failed", str(job_failed.get("reason") or "JobFailed")
        message = str(job_failed.get("message") or "the Job failed")
        if crashes:
            message += f"; {'; '.join(crashes[:3])}"
    elif spec.stopped:
        phase, reason, message = "Stopped", "Stopped", f"suspended; {done}"
    elif running:
        phase, reason, message = "Running", "Running", done
    elif job is not None and not reports and now - since > timeout:
        phase, reason = "Failed", "DeploymentTimeout"
        message = f"workers not running within timeoutMinutes ({spec.timeout_minutes})" + (
            f"; {'; '.join(crashes[:3])}" if crashes else ""
        )
    else:
        phase, reason, message = "Deploying", "Deploying", "waiting for the model and workers"
        if crashes:
            message += f"; {'; '.join(crashes[:3])}"
    active = phase in ("Deploying", "Running")
    conditions = lifecycle(
        old.get("conditions"),
        ready=phase == "Completed",
        progressing=active,
        reason=reason,
        message=message,
        generation=generation,
        timestamp=format_time(now),
        new_rollout=started is None,
    )
    return {
        "phase": phase,
        "taskId": task,
        "progress": {"total": total, "succeeded": succeeded, "failed": failed},
        "progressSummary": f"{succeeded + failed}/{total}",
        "outputManifests": manifests,
        "conditions": conditions,
        "observedGeneration": generation,
        "message": message,
    }
