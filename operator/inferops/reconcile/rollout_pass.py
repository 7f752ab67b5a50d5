"""A RealTimeService pass's part of a rollout: read what it needs (status.rollout, the
ratios that ran, the router pods' counters), ask the state machine, and hand back the
service as the builders must see it (the ratios in effect, the step's mark on the
router config) with what the status and the events must say."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from inferops.api.catalog import Catalog
from inferops.api.realtime import RealTimeServiceSpec, Shadow
from inferops.api.rollout import RolloutStatus
from inferops.reconcile.prometheus import HttpPrometheus, QuerySource, fill
from inferops.reconcile.rollout import (
    Decision,
    Ratios,
    Reading,
    Window,
    decide,
    is_active,
    parse_time,
    shadow_step,
)
from inferops.reconcile.router_metrics import MetricsSource, read_step
from inferops.reconcile.workload_health import rolled_out
from inferops.resources.desired import Service, realtime_inputs
from inferops.resources.labels import version_of
from inferops.resources.realtime import router_digest


def label(application: str, version: str) -> str:
    return f"{application}:{version}"


def target_ratios(spec: RealTimeServiceSpec) -> Ratios:
    """The spec's ratios: where a rollout ends (shadows take no share)."""
    return {label(v.application, v.version): v.traffic_ratio for v in spec.versions if not v.shadow}


def running_ratios(status: Mapping[str, Any]) -> Ratios | None:
    """The ratios of the last pass (status.versions), None before the first."""
    found = {}
    for entry in status.get("versions") or ():
        if isinstance(entry, Mapping) and isinstance(entry.get("trafficRatio"), int):
            found[label(str(entry.get("application")), str(entry.get("version")))] = int(
                entry["trafficRatio"]
            )
    return found or None


def previous_rollout(status: Mapping[str, Any]) -> RolloutStatus | None:
    try:
        raw = status.get("rollout")
        return RolloutStatus.model_validate(raw, strict=False) if raw else None
    except ValidationError:
        return None  # unreadable (edited by hand): the rollout starts again from what runs


def router_note(status: RolloutStatus | None) -> str:
    """A line in the router config for each step, so that every step rolls the router
    pods and their counters count that step alone."""
    if status is None or not is_active(status):
        return ""
    return f"rollout {status.id} step {status.step}"


def with_ratios(
    service: Service, ratios: Mapping[str, int], note: str, shadowing: int | None = None
) -> Service:
    """The service as the builders see it during a rollout: the ratios in effect, and in
    a shadow step the new version as a shadow of that percent, its answers compared."""
    spec = service.spec
    assert isinstance(spec, RealTimeServiceSpec)
    candidate = spec.rollout.version if spec.rollout is not None else None
    versions = []
    for v in spec.versions:
        name = label(v.application, v.version)
        if v.shadow is not None:
            versions.append(v)
        elif shadowing is not None and name == candidate:
            versions.append(
                v.model_copy(
                    update={"traffic_ratio": 0, "shadow": Shadow(sample_percent=shadowing)}
                )
            )
        else:
            versions.append(v.model_copy(update={"traffic_ratio": ratios.get(name, 0)}))
    return replace(
        service,
        spec=spec.model_copy(update={"versions": versions}),
        router_note=note,
        compare_shadows=shadowing is not None,
    )


def gate_queries(
    service: Service,
    previous: RolloutStatus,
    url: str,
    now: datetime.datetime,
    prometheus: Callable[[str], QuerySource] | None,
) -> dict[str, float | None]:
    """Each gates.queries value, placeholders filled, from the catalog's Prometheus."""
    spec = service.spec
    assert isinstance(spec, RealTimeServiceSpec)
    assert spec.rollout is not None
    meta = service.obj["metadata"]
    elapsed = (now - parse_time(previous.step_started)).total_seconds()
    values = {
        "version": spec.rollout.version,
        "service": str(meta["name"]),
        "namespace": str(meta["namespace"]),
        "window": f"{max(int(elapsed), 30)}s",  # at least two scrapes of most setups
    }
    source = (prometheus or HttpPrometheus)(url)
    return {q.name: source.query(fill(q.query, values)) for q in spec.rollout.gates.queries or ()}


def candidate_ready(spec: RealTimeServiceSpec, deployments: Sequence[Mapping[str, Any]]) -> bool:
    """Every Deployment of the rollout's version exists and is rolled out."""
    if spec.rollout is None:
        return True
    mine = [d for d in deployments if label(*map(str, version_of(d))) == spec.rollout.version]
    return bool(mine) and all(rolled_out(d) for d in mine)


def rollout_step(  # noqa: PLR0917 - a pass's inputs to its rollout
    service: Service,
    catalog: Catalog,
    pods: Sequence[Mapping[str, Any]],
    metrics: MetricsSource,
    now: datetime.datetime,
    deployments: Sequence[Mapping[str, Any]] = (),
    *,
    prometheus: Callable[[str], QuerySource] | None = None,
) -> tuple[Service, Decision | None]:
    """The service to build and the rollout's decision (None: no rollout, now or before)."""
    spec = service.spec
    assert isinstance(spec, RealTimeServiceSpec)
    status = service.obj.get("status") or {}
    previous = previous_rollout(status)
    if spec.rollout is None and previous is None:
        return service, None
    reading = None
    if spec.rollout is not None and previous is not None and is_active(previous):
        shadowing = shadow_step(spec.rollout, previous)
        running_step = with_ratios(service, previous.ratio_map(), router_note(previous), shadowing)
        digest = router_digest(realtime_inputs(running_step, catalog))
        q = spec.rollout.gates.latency_quantile
        shadowed = shadowing is not None
        reading = read_step(metrics, pods, digest, spec.rollout.version, q, shadowed)
        if spec.rollout.gates.queries and catalog.prometheus is not None:
            reading = replace(
                reading or Reading(Window(), Window()),
                queries=gate_queries(service, previous, catalog.prometheus.url, now, prometheus),
            )
    decision = decide(
        spec.rollout,
        target_ratios(spec),
        previous=previous,
        running=running_ratios(status),
        reading=reading,
        now=now,
        candidate_ready=candidate_ready(spec, deployments),
    )
    shadowing = shadow_step(spec.rollout, decision.status)
    note = router_note(decision.status)
    return with_ratios(service, decision.ratios, note, shadowing), decision
