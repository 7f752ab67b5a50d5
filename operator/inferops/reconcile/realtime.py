"""Reconciling a RealTimeService: validate, apply the desired children, prune, report.

Level-based: every entry point (create, update, resume, a child's event, an application's
change, the timer) ends in the same two functions, which read the current state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inferops.api.catalog import Catalog
from inferops.api.names import API_VERSION, KIND_REALTIME
from inferops.api.realtime import RealTimeServiceSpec
from inferops.reconcile.common import (
    ROUTER_UNAVAILABLE,
    Apps,
    Blocker,
    Outcome,
    applications,
    blocker,
    is_blocked_status,
    now,
    write_blocked,
    write_status,
)
from inferops.reconcile.kube import Kube
from inferops.reconcile.realtime_status import Observed, realtime_status
from inferops.resources.labels import LABEL_COMPONENT, owner_labels
from inferops.resources.realtime import Inputs, realtime_children, service_url

CHILD_KINDS = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
)
ROUTE_KIND = ("gateway.networking.k8s.io/v1", "HTTPRoute")
ROUTE_MISSING = (
    "the catalog's router.mode is gateway-api, but this cluster does not serve "
    "gateway.networking.k8s.io/v1 HTTPRoute: install the Gateway API CRDs (the operator "
    "retries every 30 s) or set router.mode to nginx"
)


def _inputs(obj: Mapping[str, Any], catalog: Catalog, apps: Apps) -> Inputs:
    spec = RealTimeServiceSpec.model_validate(obj["spec"])
    namespace = obj["metadata"]["namespace"]
    versions = {
        (e.application, e.version): apps[(namespace, e.application)].versions[e.version].spec
        for e in spec.versions
    }
    return Inputs(obj, spec, versions, catalog)


def reconcile_realtime(kube: Kube, catalog: Catalog, namespace: str, name: str) -> Outcome | None:
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
        return write_blocked(kube, obj, Blocker(ROUTER_UNAVAILABLE, ROUTE_MISSING))
    inputs = _inputs(obj, catalog, apps)
    desired = realtime_children(inputs)
    for child in desired:
        kube.apply(child)
    pruned = kube.prune(CHILD_KINDS, namespace, owner_labels(KIND_REALTIME, name), desired)
    outcome = _report(kube, obj, inputs)
    return Outcome(obj, outcome.old_phase, outcome.phase, outcome.message, tuple(pruned))


def refresh_realtime_status(
    kube: Kube, catalog: Catalog, namespace: str, name: str
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
    return _report(kube, obj, _inputs(obj, catalog, apps))


def _report(kube: Kube, obj: Mapping[str, Any], inputs: Inputs) -> Outcome:
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
