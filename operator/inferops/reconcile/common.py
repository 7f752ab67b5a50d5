"""What the reconcilers of every kind share: outcomes, app lookups, blocking problems."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inferops.api.catalog import Catalog
from inferops.api.names import API_VERSION, KIND_APPLICATION
from inferops.reconcile.conditions import condition
from inferops.reconcile.kube import Kube
from inferops.reconcile.realtime_status import failed_status
from inferops.validation import ValidationContext, validate_object
from inferops.validation.quota import REASON as QUOTA_REASON
from inferops.validation.quota import limits_for, over_quota
from inferops.validation.references import KnownApplication, index_applications

MAX_MESSAGE_PROBLEMS = 5
Apps = Mapping[tuple[str, str], KnownApplication]


@dataclass(frozen=True)
class Outcome:
    """What a reconcile did, for events and logs."""

    obj: Mapping[str, Any]
    old_phase: str | None
    phase: str | None
    message: str = ""
    pruned: tuple[str, ...] = ()


@dataclass(frozen=True)
class Blocker:
    """Why an object gets no children: its spec is invalid, or it is over a quota."""

    reason: str
    message: str


# Failed because the cluster lacks what the catalog's router needs (the Gateway API).
ROUTER_UNAVAILABLE = "RouterUnavailable"
# Reasons that the cluster, not the spec, can lift: such objects are retried on a timer.
WAITING_ON_CLUSTER = frozenset({QUOTA_REASON, ROUTER_UNAVAILABLE})


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def applications(kube: Kube, namespace: str) -> dict[tuple[str, str], KnownApplication]:
    return index_applications(kube.list_objects(API_VERSION, KIND_APPLICATION, namespace))


def quota_message(kube: Kube, catalog: Catalog, obj: Mapping[str, Any]) -> str | None:
    """Why this object is beyond its namespace's quota (the oldest objects win), if it is."""
    meta = obj["metadata"]
    namespace = kube.get("v1", "Namespace", None, meta["namespace"]) or {}
    limits, _ = limits_for(catalog.quotas, (namespace.get("metadata") or {}).get("annotations"))
    siblings = kube.list_objects(API_VERSION, obj["kind"], meta["namespace"])
    return over_quota(obj["kind"], siblings, limits).get(meta["name"])


def blocker(kube: Kube, catalog: Catalog, obj: Mapping[str, Any], apps: Apps) -> Blocker | None:
    problems = validate_object(obj, ValidationContext(catalog=catalog, applications=apps))
    if problems:
        text = "; ".join(f"{p.path}: {p.message}" for p in problems[:MAX_MESSAGE_PROBLEMS])
        return Blocker("InvalidSpec", text)
    quota = quota_message(kube, catalog, obj)
    if quota:
        return Blocker(QUOTA_REASON, quota)
    return None


def write_status(kube: Kube, obj: Mapping[str, Any], status: dict[str, Any]) -> Outcome:
    """Patches status when anything in it changed."""
    old = obj.get("status") or {}
    meta = obj["metadata"]
    if any(old.get(k) != v for k, v in status.items()):
        kube.patch_status(obj["kind"], meta["namespace"], meta["name"], status)
    return Outcome(obj, old.get("phase"), status.get("phase"), str(status.get("message", "")))


def write_blocked(kube: Kube, obj: Mapping[str, Any], block: Blocker) -> Outcome:
    status = failed_status(
        obj.get("status"),
        obj["metadata"].get("generation"),
        reason=block.reason,
        message=block.message,
        now=now(),
    )
    return write_status(kube, obj, status)


def is_blocked_status(obj: Mapping[str, Any]) -> bool:
    """Failed for this generation because of the spec, a quota or a missing API (not by
    the workload)."""
    status = obj.get("status") or {}
    ready = condition(status.get("conditions"), "Ready")
    return status.get("observedGeneration") == obj["metadata"].get("generation") and ready.get(
        "reason"
    ) in ("InvalidSpec", QUOTA_REASON, ROUTER_UNAVAILABLE)
