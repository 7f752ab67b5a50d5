"""The status of a BatchService, from its Job and the workers' reports.

Workers leave their report (`inferops.contract.worker_report`) in their container's
termination message, so progress needs no access to object storage: it counts the indexes
that have finished.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inferops.api import phases
from inferops.api.batch import BatchPhase, BatchProgress, BatchServiceSpec, BatchServiceStatus
from inferops.contract.worker_report import WorkerReport
from inferops.reconcile.causes import Cause, pod_causes, summary
from inferops.reconcile.conditions import rollout_start
from inferops.reconcile.lifecycle import Rule, Verdict, always, decide, mark, with_detail
from inferops.reconcile.workload_health import job_condition

Obj = Mapping[str, Any]
WORKER = "worker"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def _worker_state(pod: Obj) -> Obj:
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        if status.get("name") == WORKER:
            return dict(status.get("state") or {})
    return {}


def worker_reports(pods: Sequence[Obj]) -> dict[str, WorkerReport]:
    """index -> the report of its last successful worker (one per index, no double count)."""
    reports: dict[str, WorkerReport] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or ""):
        terminated = _worker_state(pod).get("terminated") or {}
        if terminated.get("exitCode") != 0:
            continue
        index = (pod["metadata"].get("annotations") or {}).get(INDEX_ANNOTATION, "")
        report = WorkerReport.parse(str(terminated.get("message") or ""))
        if report is not None:
            reports[index] = report
    return reports


@dataclass(frozen=True)
class Facts:
    """What the phase is decided on."""

    stopped: bool
    complete: bool
    job_failed: Obj | None
    job_exists: bool
    running: bool
    reported: bool
    timed_out: bool
    timeout_minutes: int
    progress: BatchProgress
    causes: tuple[Cause, ...]  # what the pods say, most pressing first

    @property
    def crashes(self) -> str:
        return summary(self.causes)

    @property
    def done(self) -> str:
        p = self.progress
        return (
            f"{p.succeeded + p.failed}/{p.total} sources"
            if self.reported
            else ("no worker finished yet")
        )


def _completed(f: Facts) -> Verdict[BatchPhase]:
    p = f.progress
    message = f"{p.succeeded} succeeded, {p.failed} failed of {p.total} sources"
    return Verdict(phases.COMPLETED, phases.COMPLETED, message, ready=True)


def _job_failed(f: Facts) -> Verdict[BatchPhase]:
    failed = f.job_failed or {}
    message = str(failed.get("message") or "the Job failed")
    reason = str(failed.get("reason") or phases.JOB_FAILED)
    return Verdict(phases.FAILED, reason, with_detail(message, f.crashes))


def _stopped(f: Facts) -> Verdict[BatchPhase]:
    return Verdict(phases.STOPPED, phases.STOPPED, f"suspended; {f.done}")


def _running(f: Facts) -> Verdict[BatchPhase]:
    return Verdict(phases.RUNNING, phases.RUNNING, f.done, progressing=True)


def _timed_out(f: Facts) -> Verdict[BatchPhase]:
    message = f"workers not running within timeoutMinutes ({f.timeout_minutes})"
    return Verdict(phases.FAILED, phases.DEPLOYMENT_TIMEOUT, with_detail(message, f.crashes))


def _deploying(f: Facts) -> Verdict[BatchPhase]:
    message = with_detail("waiting for the model and workers", f.crashes)
    reason = f.causes[0].reason if f.causes else phases.DEPLOYING
    return Verdict(
        phases.DEPLOYING, reason, message, progressing=True, progressing_reason=phases.DEPLOYING
    )


RULES: tuple[Rule[Facts, BatchPhase], ...] = (
    Rule(lambda f: f.complete, _completed),
    Rule(lambda f: f.job_failed is not None, _job_failed),
    Rule(lambda f: f.stopped, _stopped),
    Rule(lambda f: f.running, _running),
    Rule(lambda f: f.job_exists and not f.reported and f.timed_out, _timed_out),
    Rule(always, _deploying),
)


def batch_status(
    spec: BatchServiceSpec,
    *,
    generation: int | None,
    old: Mapping[str, Any] | None,
    job: Obj | None,
    pods: Sequence[Obj],
    task: str,
    now: datetime.datetime,
) -> BatchServiceStatus:
    old = old or {}
    reports = worker_reports(pods).values()
    progress = BatchProgress(
        total=sum(r.total for r in reports),
        succeeded=sum(r.succeeded for r in reports),
        failed=sum(r.failed for r in reports),
    )
    started = rollout_start(old.get("conditions"), generation)
    facts = Facts(
        stopped=spec.stopped,
        complete=job_condition(job, "Complete") is not None,
        job_failed=job_condition(job, "Failed"),
        job_exists=job is not None,
        running=any(
            (p.get("status") or {}).get("phase") == "Running" and "running" in _worker_state(p)
            for p in pods
        ),
        reported=bool(reports),
        timed_out=now - (started or now) > datetime.timedelta(minutes=spec.timeout_minutes),
        timeout_minutes=spec.timeout_minutes,
        progress=progress,
        causes=tuple(pod_causes(pods, now=now, timeout_minutes=spec.timeout_minutes)),
    )
    verdict = decide(RULES, facts)
    return BatchServiceStatus(
        phase=verdict.phase,
        task_id=task,
        progress=progress,
        progress_summary=f"{progress.succeeded + progress.failed}/{progress.total}",
        output_manifests=sorted({m for r in reports for m in r.manifests}),
        conditions=mark(
            old.get("conditions"),
            verdict,
            generation=generation,
            now=now,
            new_rollout=started is None,
        ),
        observed_generation=generation,
        message=verdict.message,
    )
