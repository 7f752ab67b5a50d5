"""Reconciling a RealTimeService: validate, apply the desired children, prune, report.

Level-based: every entry point (create, update, resume, a child's event, an application's
change, the timer) ends in the same two functions, which read the current state.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from inferops.api import phases
from inferops.api.base import Condition
from inferops.api.catalog import Catalog
from inferops.api.names import API_VERSION, KIND_REALTIME
from inferops.reconcile.causes import recheck_in
from inferops.reconcile.common import (
    Apps,
    Blocker,
    Event,
    Outcome,
    applications,
    blocker,
    now,
    write_blocked,
    write_status,
)
from inferops.reconcile.conditions import condition, format_time, set_condition
from inferops.reconcile.errors import apply_children
from inferops.reconcile.kube import Cluster, prune
from inferops.reconcile.lifecycle import with_detail
from inferops.reconcile.realtime_status import Observed, realtime_status
from inferops.reconcile.rollout import Decision
from inferops.reconcile.rollout_pass import previous_rollout, rollout_step
from inferops.reconcile.router_metrics import HttpMetrics, MetricsSource
from inferops.resources.desired import (
    CHILD_KINDS,
    desired_state,
    parse_service,
    realtime_inputs,
)
from inferops.resources.labels import LABEL_COMPONENT, owner_labels
from inferops.resources.realtime import Inputs, replicas_for, service_url
from inferops.validation.references import version_specs

CONFLICT = (
    "the catalog no longer admits this spec; its children are kept as they were applied "
    "(only stopped is followed) until the spec is changed to what the catalog offers"
)
ROUTE_KIND = ("gateway.networking.k8s.io/v1", "HTTPRoute")
# Where passes read the router pods' counters during a rollout (tests put a fake here).
METRICS: MetricsSource = HttpMetrics()
ROUTE_MISSING = (
    "the catalog's router.mode is gateway-api, but this cluster does not serve "
    "gateway.networking.k8s.io/v1 HTTPRoute: install the Gateway API CRDs (the operator "
    "retries every 30 s) or set router.mode to nginx"
)


class Kept(enum.Enum):
    """status.rollout stays as it was: the children are kept as applied."""

    KEEP = "keep"


KEEP = Kept.KEEP


def reconcile_realtime(
    kube: Cluster, catalog: Catalog, namespace: str, name: str
) -> Outcome | None:
    """Makes the children match the spec, then reports. None when the object is gone."""
    obj = kube.get(API_VERSION, KIND_REALTIME, namespace, name)
    if obj is None:
        return None
    apps = applications(kube, namespace)
    block = blocker(kube, catalog, obj, apps)
    if block is not None and block.catalog_only and _deployed(kube, namespace, name):
        return _keep_running(kube, catalog, obj, apps, block)
    if block is not None:
        # Existing children keep serving: a bad edit must not take a running service down.
        return write_blocked(kube, obj, block)
    if catalog.router.mode == "gateway-api" and not kube.served(*ROUTE_KIND):
        # Checked before anything is applied: models without a route would serve nobody.
        return write_blocked(kube, obj, Blocker(phases.ROUTER_UNAVAILABLE, ROUTE_MISSING))
    # Parsed once: the builders and the status read the same spec (with a rollout's
    # ratios in effect, when one runs).
    service = parse_service(obj, version_specs(apps, namespace))
    labels = owner_labels(KIND_REALTIME, name)
    pods = kube.list_objects("v1", "Pod", namespace, labels)
    deployments = kube.list_objects("apps/v1", "Deployment", namespace, labels)
    service, rollout = rollout_step(service, catalog, pods, METRICS, now(), deployments)
    desired = desired_state(service, catalog)
    apply_children(kube, desired)
    pruned = prune(kube, CHILD_KINDS[KIND_REALTIME], namespace, labels, desired)
    outcome = _report(kube, obj, realtime_inputs(service, catalog), rollout=rollout)
    return replace(outcome, pruned=tuple(pruned))


def _deployed(kube: Cluster, namespace: str, name: str) -> bool:
    labels = owner_labels(KIND_REALTIME, name)
    return bool(kube.list_objects("apps/v1", "Deployment", namespace, labels))


def _keep_running(
    kube: Cluster, catalog: Catalog, obj: Mapping[str, Any], apps: Apps, block: Blocker
) -> Outcome:
    """A running service whose spec the catalog no longer admits (a flavor or a pool left
    it, a rule of the catalog changed). Failing it, or rebuilding its children without the
    flavor, would take down a service nobody changed; so its children stay as they were
    applied, nothing is pruned, and the status keeps following them, with the condition
    CatalogConflict (and a Warning event) naming what the catalog refuses. Only `stopped`
    is still followed, by scaling the Deployments, so a service can always be stopped.
    Editing the spec to what the catalog offers ends it."""
    service = parse_service(obj, version_specs(apps, str(obj["metadata"]["namespace"])))
    inputs = realtime_inputs(service, catalog)
    for deployment in kube.list_objects(
        "apps/v1", "Deployment", inputs.namespace, owner_labels(KIND_REALTIME, inputs.name)
    ):
        wanted = replicas_for(inputs, deployment["metadata"].get("labels") or {})
        if wanted is not None and deployment["spec"].get("replicas") != wanted:
            meta = deployment["metadata"]
            kube.patch(
                "apps/v1",
                "Deployment",
                inputs.namespace,
                meta["name"],
                {"spec": {"replicas": wanted}},
            )
    return _report(kube, obj, inputs, block.message, rollout=KEEP)


def without_condition(status: Mapping[str, Any], type_: str) -> dict[str, Any]:
    conditions = [c for c in status.get("conditions") or () if c.get("type") != type_]
    return {**status, "conditions": conditions}


def _report(
    kube: Cluster,
    obj: Mapping[str, Any],
    inputs: Inputs,
    conflict: str | None = None,
    *,
    rollout: Decision | Kept | None = None,
) -> Outcome:
    """Writes the status; `rollout` is this pass's rollout decision, None without a
    rollout, KEEP to leave status.rollout as it was (children kept as applied)."""
    labels = owner_labels(KIND_REALTIME, inputs.name)
    deployments = kube.list_objects("apps/v1", "Deployment", inputs.namespace, labels)
    models = [d for d in deployments if d["metadata"]["labels"].get(LABEL_COMPONENT) == "model"]
    router = next(
        (d for d in deployments if d["metadata"]["labels"].get(LABEL_COMPONENT) == "router"),
        None,
    )
    pods = kube.list_objects("v1", "Pod", inputs.namespace, labels)
    observed = Observed(models, router, pods, router_needed=inputs.catalog.router.mode == "nginx")
    old = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    status = realtime_status(
        inputs.spec,
        generation=generation,
        old=without_condition(old, phases.CATALOG_CONFLICT),
        observed=observed,
        url=service_url(inputs),
        now=now(),
    )
    recheck = recheck_in(pods, now())
    notes: tuple[Event, ...] = ()
    cleared: tuple[str, ...] = ()
    if isinstance(rollout, Decision):
        cleared = ("rollout",)
        status.rollout = rollout.status
        status.conditions = rollout_condition(status.conditions, old, rollout, generation)
        if rollout.recheck is not None:
            recheck = min(recheck or rollout.recheck, rollout.recheck)
        if rollout.event is not None:
            event = rollout.event
            notes = (Event(event.reason, event.message, warning=event.type == "Warning"),)
    elif rollout is KEEP:
        status.rollout = previous_rollout(old)
    else:
        cleared = ("rollout",)
    if conflict is None:
        return replace(write_status(kube, obj, status, cleared), recheck=recheck, notes=notes)
    was = condition(old.get("conditions"), phases.CATALOG_CONFLICT)
    text = f"{CONFLICT}: {conflict}"
    status.conditions.append(
        Condition(
            type=phases.CATALOG_CONFLICT,
            status="True",
            reason=phases.CATALOG_CHANGED,
            message=text,
            observed_generation=generation,
            last_transition_time=was.get("lastTransitionTime") or format_time(now()),
        )
    )
    status.message = with_detail(status.message, text)
    outcome = write_status(kube, obj, status)
    if was.get("status") == "True":
        return replace(outcome, recheck=recheck)
    notes = (Event(phases.CATALOG_CHANGED, text, warning=True),)
    return replace(outcome, notes=notes, recheck=recheck)


def rollout_condition(
    conditions: list[Condition], old: Mapping[str, Any], rollout: Decision, generation: Any
) -> list[Condition]:
    """Condition Rollout: True while a rollout holds or once it succeeded, False after a
    rollback (its message names the gate and the value), Unknown while paused; gone with
    spec.rollout."""
    current = [c.to_dict() for c in conditions if c.type != phases.ROLLOUT]
    state = rollout.status
    if state is None:
        return [Condition.model_validate(c) for c in current]
    was = condition(old.get("conditions"), phases.ROLLOUT)
    ok = None if state.phase == "Paused" else state.phase not in ("RolledBack", "Failed")
    updated = set_condition(
        [*current, *([dict(was)] if was else [])],
        phases.ROLLOUT,
        ok,
        reason=state.phase,
        message=state.message,
        generation=generation if isinstance(generation, int) else None,
        timestamp=format_time(now()),
    )
    return [Condition.model_validate(c, strict=False) for c in updated]
