"""Reconciling a RealTimeService: validate, apply the desired children, prune, report.

Level-based: every entry point (create, update, resume, a child's event, an application's
change, the timer) ends in the same two functions, which read the current state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inferops.api import phases
from inferops.api.catalog import Catalog
from inferops.api.names import API_VERSION, KIND_REALTIME
from inferops.reconcile.common import (
    Blocker,
    Outcome,
    applications,
    blocker,
    is_blocked_status,
    now,
    write_blocked,
    write_status,
)
from inferops.reconcile.kube import Cluster, prune
from inferops.reconcile.realtime_status import Observed, realtime_status
from inferops.resources.desired import (
    CHILD_KINDS,
    desired_state,
    parse_service,
    realtime_inputs,
)
from inferops.resources.labels import LABEL_COMPONENT, owner_labels
from inferops.resources.realtime import Inputs, service_url
from inferops.validation.references import version_specs

ROUTE_KIND = ("gateway.networking.k8s.io/v1", "HTTPRoute")
ROUTE_MISSING = (
    "the catalog's router.mode is gateway-api, but this cluster does not serve "
    "gateway.networking.k8s.io/v1 HTTPRoute: install the Gateway API CRDs (the operator "
    "retries every 30 s) or set router.mode to nginx"
)


def reconcile_realtime(
    kube: Cluster, catalog: Catalog, namespace: str, name: str
) -> Outcome | None:
    """Makes the children match the spec, then reports. None when the object is gone."""
    obj = kube.get(API_VERSION, KIND_REALTIME, namespace, name)
    if obj is None:
        return None
    apps = applications(kube, namespace)
    block = blocker(kube, catalog, obj, apps)
    if block is not None:
        # Existing children keep serving: a bad edit must not take a running service down.
        return write_blocked(kube, obj, block)
    if catalog.router.mode == "gateway-api" and not kube.served(*ROUTE_KIND):
        # Checked before anything is applied: models without a route would serve nobody.
        return write_blocked(kube, obj, Blocker(phases.ROUTER_UNAVAILABLE, ROUTE_MISSING))
    # Parsed once: the builders and the status read the same spec.
    service = parse_service(obj, version_specs(apps, namespace))
    desired = desired_state(service, catalog)
    for child in desired:
        kube.apply(child)
    labels = owner_labels(KIND_REALTIME, name)
    pruned = prune(kube, CHILD_KINDS[KIND_REALTIME], namespace, labels, desired)
    outcome = _report(kube, obj, realtime_inputs(service, catalog))
    return Outcome(obj, outcome.old_phase, outcome.phase, outcome.message, tuple(pruned))


def refresh_realtime_status(
    kube: Cluster, catalog: Catalog, namespace: str, name: str
) -> Outcome | None:
    """Recomputes the status from the children without applying anything."""
    obj = kube.get(API_VERSION, KIND_REALTIME, namespace, name)
    if obj is None:
        return None
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return None  # this generation is not applied yet: reconcile_realtime reports it
    if is_blocked_status(obj):
        return None  # Failed for its spec, a quota or the router: reconcile_realtime's status
    apps = applications(kube, namespace)
    if blocker(kube, catalog, obj, apps) is not None:
        return None  # Failed for its spec or quota: reconcile_realtime owns that status
    service = parse_service(obj, version_specs(apps, namespace))
    return _report(kube, obj, realtime_inputs(service, catalog))


def _report(kube: Cluster, obj: Mapping[str, Any], inputs: Inputs) -> Outcome:
    labels = owner_labels(KIND_REALTIME, inputs.name)
    deployments = kube.list_objects("apps/v1", "Deployment", inputs.namespace, labels)
    models = [d for d in deployments if d["metadata"]["labels"].get(LABEL_COMPONENT) == "model"]
    router = next(
        (d for d in deployments if d["metadata"]["labels"].get(LABEL_COMPONENT) == "router"),
        None,
    )
    pods = kube.list_objects("v1", "Pod", inputs.namespace, labels)
    observed = Observed(models, router, pods, router_needed=inputs.catalog.router.mode == "nginx")
    status = realtime_status(
        inputs.spec,
        generation=obj["metadata"].get("generation"),
        old=obj.get("status"),
        observed=observed,
        url=service_url(inputs),
        now=now(),
    )
    return write_status(kube, obj, status)
