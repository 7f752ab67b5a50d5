"""The status of a RealTimeService, from its spec and what its children report.

Pure: Deployments and pods in, the status model out. Phases: Deploying until every version
has its ready nodes and the router is ready, then Running; Abnormal when a running service
loses ready nodes or its pods crash-loop; Failed when timeoutMinutes passes without
readiness (or on a blocking reason, see `blocked_status`); Stopped when stopped.

Shadow versions answer no client, so they take no part in the phase (a broken shadow must
not fail, or mark Degraded in Argo CD, a service whose production serves): their
readiness is the condition ShadowsReady, and the message says what keeps one from it.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inferops.api import phases
from inferops.api.realtime import (
    RealTimePhase,
    RealTimeServiceSpec,
    RealTimeServiceStatus,
    ServiceVersionStatus,
)
from inferops.reconcile.causes import Cause, pod_causes, summary
from inferops.reconcile.conditions import format_time, rollout_start, set_condition
from inferops.reconcile.lifecycle import Rule, Verdict, always, decide, mark, with_detail
from inferops.reconcile.workload_health import (
    deadline_exceeded,
    ready_replicas,
    rolled_out,
)
from inferops.resources.labels import version_of

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Observed:
    """What the children say, gathered by the handler."""

    model_deployments: Sequence[Obj]
    router: Obj | None
    pods: Sequence[Obj]
    router_needed: bool = True


@dataclass(frozen=True)
class Facts:
    """What the phase is decided on."""

    stopped: bool
    ready_nodes: int  # of the versions that answer clients (shadows apart)
    desired_nodes: int
    draining_nodes: int  # still ready once stopped, shadows included
    all_ready: bool
    router_ok: bool
    was_running: bool  # Running or Abnormal for this generation
    was_phase_running: bool
    timed_out: bool
    timeout_minutes: int
    causes: tuple[Cause, ...]  # what the pods say, most pressing first

    @property
    def crashes(self) -> str:
        return summary(self.causes)

    @property
    def reason(self) -> str:
        """The most pressing cause's reason, else the phase's own."""
        return self.causes[0].reason if self.causes else phases.DEPLOYING

    @property
    def instances(self) -> str:
        return f"{self.ready_nodes}/{self.desired_nodes} instances ready"


def _stopped(f: Facts) -> Verdict[RealTimePhase]:
    message = "stopped: scaled to zero" if f.draining_nodes == 0 else "stopping"
    draining = f.draining_nodes > 0
    return Verdict(
        phases.STOPPED,
        phases.STOPPED,
        message,
        progressing=draining,
        progressing_reason=phases.DEPLOYING if draining else None,
    )


def _running(f: Facts) -> Verdict[RealTimePhase]:
    return Verdict(phases.RUNNING, phases.RUNNING, f.instances, ready=True)


def _abnormal(f: Facts) -> Verdict[RealTimePhase]:
    if f.causes:
        return Verdict(phases.ABNORMAL, f.reason, with_detail(f.instances, f.crashes))
    return Verdict(phases.ABNORMAL, phases.NODES_NOT_READY, f.instances)


def _timed_out(f: Facts) -> Verdict[RealTimePhase]:
    message = f"not ready within timeoutMinutes ({f.timeout_minutes}): {f.instances}"
    return Verdict(phases.FAILED, phases.DEPLOYMENT_TIMEOUT, with_detail(message, f.crashes))


def _deploying(f: Facts) -> Verdict[RealTimePhase]:
    message = f.instances if f.router_ok else f"{f.instances}; router not ready"
    return Verdict(
        phases.DEPLOYING,
        f.reason,
        with_detail(message, f.crashes),
        progressing=True,
        progressing_reason=phases.DEPLOYING,
    )


RULES: tuple[Rule[Facts, RealTimePhase], ...] = (
    Rule(lambda f: f.stopped, _stopped),
    Rule(lambda f: f.all_ready, _running),
    Rule(lambda f: f.was_running, _abnormal),
    Rule(lambda f: f.timed_out and not f.was_phase_running, _timed_out),
    Rule(always, _deploying),
)


def version_statuses(
    spec: RealTimeServiceSpec, deployments: Sequence[Obj]
) -> list[ServiceVersionStatus]:
    found = []
    for entry in spec.versions:
        mine = [d for d in deployments if version_of(d) == (entry.application, entry.version)]
        found.append(
            ServiceVersionStatus(
                application=entry.application,
                version=entry.version,
                traffic_ratio=entry.traffic_ratio,
                ready_nodes=sum(ready_replicas(d) for d in mine),
                desired_nodes=0 if spec.stopped else entry.compute_nodes,
            )
        )
    return found


def _shadows_condition(
    spec: RealTimeServiceSpec,
    versions: Sequence[ServiceVersionStatus],
    observed: Observed,
    *,
    now: datetime.datetime,
    timeout_minutes: int,
) -> tuple[bool, str, str]:
    """(every shadow ready, the reason, what keeps those that are not)."""
    waiting = []
    reasons = []
    for entry, status in zip(spec.versions, versions, strict=True):
        if entry.shadow is None:
            continue
        mine = (entry.application, entry.version)
        deployments = [d for d in observed.model_deployments if version_of(d) == mine]
        if status.ready_nodes >= status.desired_nodes and all(rolled_out(d) for d in deployments):
            continue
        causes = pod_causes(
            [p for p in observed.pods if version_of(p) == mine],
            now=now,
            timeout_minutes=timeout_minutes,
            pool=spec.resource_pool,
        )
        text = (
            f"shadow {entry.application}:{entry.version}: "
            f"{status.ready_nodes}/{status.desired_nodes} instances ready"
        )
        waiting.append(with_detail(text, summary(causes)))
        reasons.append(causes[0].reason if causes else phases.NODES_NOT_READY)
    if not waiting:
        return True, phases.READY, "every shadow version is ready"
    return False, reasons[0], "; ".join(waiting)


def traffic_summary(spec: RealTimeServiceSpec) -> str:
    """`iris:1.0.0=70,iris:2.0.0=30`; a shadow shows its sample: `iris:3.0.0=shadow10%`."""
    return ",".join(
        f"{v.application}:{v.version}="
        + (f"shadow{v.shadow.sample_percent}%" if v.shadow else str(v.traffic_ratio))
        for v in spec.versions
    )


def realtime_status(
    spec: RealTimeServiceSpec,
    *,
    generation: int | None,
    old: Mapping[str, Any] | None,
    observed: Observed,
    url: str | None,
    now: datetime.datetime,
) -> RealTimeServiceStatus:
    old = old or {}
    versions = version_statuses(spec, observed.model_deployments)
    router_ok = not observed.router_needed or (
        observed.router is not None and rolled_out(observed.router)
    )
    started = rollout_start(old.get("conditions"), generation)
    timeout = datetime.timedelta(minutes=max(v.timeout_minutes for v in spec.versions))
    minutes = int(timeout.total_seconds() // 60)
    shadows = {(v.application, v.version) for v in spec.versions if v.shadow}
    serving = [s for v, s in zip(spec.versions, versions, strict=True) if not v.shadow]
    deployments = [d for d in observed.model_deployments if version_of(d) not in shadows]
    facts = Facts(
        stopped=spec.stopped,
        ready_nodes=sum(v.ready_nodes for v in serving),
        desired_nodes=sum(v.desired_nodes for v in serving),
        draining_nodes=sum(v.ready_nodes for v in versions),
        all_ready=all(v.ready_nodes >= v.desired_nodes for v in serving)
        and all(rolled_out(d) for d in deployments)
        and router_ok,
        router_ok=router_ok,
        was_running=old.get("phase") in (phases.RUNNING, phases.ABNORMAL)
        and old.get("observedGeneration") == generation,
        was_phase_running=old.get("phase") == phases.RUNNING,
        timed_out=now - (started or now) > timeout
        or any(deadline_exceeded(d) for d in deployments),
        timeout_minutes=minutes,
        causes=tuple(
            pod_causes(
                [p for p in observed.pods if version_of(p) not in shadows],
                now=now,
                timeout_minutes=minutes,
                pool=spec.resource_pool,
            )
        ),
    )
    verdict = decide(RULES, facts)
    conditions = [c for c in old.get("conditions") or () if c.get("type") != phases.SHADOWS_READY]
    message = verdict.message
    if shadows and not spec.stopped:
        ready, reason, said = _shadows_condition(
            spec, versions, observed, now=now, timeout_minutes=minutes
        )
        conditions = set_condition(
            old.get("conditions"),
            phases.SHADOWS_READY,
            ready,
            reason=reason,
            message=said,
            generation=generation,
            timestamp=format_time(now),
        )
        message = message if ready else with_detail(message, said)
    return RealTimeServiceStatus(
        phase=verdict.phase,
        url=url,
        traffic=traffic_summary(spec),
        ready=f"{facts.ready_nodes}/{facts.desired_nodes}",
        versions=versions,
        conditions=mark(
            conditions,
            verdict,
            generation=generation,
            now=now,
            new_rollout=started is None,
        ),
        observed_generation=generation,
        message=message,
    )
