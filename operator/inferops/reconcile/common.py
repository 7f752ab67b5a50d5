"""What the reconcilers of every kind share: outcomes and their events, app lookups,
blocking problems and the one route for status writes."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from inferops.api import phases
from inferops.api.base import ApiModel
from inferops.api.batch import BatchServiceStatus
from inferops.api.catalog import Catalog
from inferops.api.names import API_VERSION, KIND_APPLICATION, KIND_REALTIME
from inferops.api.realtime import RealTimeServiceStatus
from inferops.reconcile.conditions import condition
from inferops.reconcile.kube import Cluster
from inferops.reconcile.lifecycle import Verdict, mark
from inferops.reconcile.secrets import secret_states
from inferops.validation import ValidationContext, validate_object
from inferops.validation.document import catalog_problems
from inferops.validation.quota import limits_for, over_quota
from inferops.validation.references import KnownApplication, index_applications
from inferops.validation.secrets import secret_references, secret_rules

MAX_MESSAGE_PROBLEMS = 5
Apps = Mapping[tuple[str, str], KnownApplication]
# Phases reported as Warning events.
WARNING_PHASES = frozenset({phases.FAILED, phases.ABNORMAL})


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the object (Warning when `warning`)."""

    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Outcome:
    """What a reconcile did, for events, metrics and logs."""

    obj: Mapping[str, Any]
    old_phase: str | None
    phase: str | None
    message: str = ""
    pruned: tuple[str, ...] = ()
    notes: tuple[Event, ...] = ()  # kind-specific events (e.g. an app version's verdict)
    reason: str | None = None  # the Ready condition's reason after this pass
    old_reason: str | None = None  # and before it
    recheck: float | None = None  # seconds until time alone changes the status

    @property
    def phase_changed(self) -> bool:
        return self.phase is not None and self.phase != self.old_phase

    def events(self) -> list[Event]:
        """The phase transition, every pruned child, then the kind's own notes."""
        found = []
        if self.phase_changed:
            assert self.phase is not None
            text = f"{self.old_phase or 'new'} -> {self.phase}"
            text = f"{text}: {self.message}" if self.message else text
            warning = self.phase in WARNING_PHASES or self.reason in phases.WARNED_REASONS
            found.append(Event(self.phase, text, warning))
        elif self.reason != self.old_reason and self.reason in phases.WARNED_REASONS:
            # The phase holds (Deploying, Abnormal) but a new cause holds the service back.
            found.append(Event(self.reason, self.message, warning=True))
        found += [Event("Pruned", f"deleted {c}: no longer in the spec") for c in self.pruned]
        return [*found, *self.notes]


@dataclass(frozen=True)
class Blocker:
    """Why an object gets no children: its spec is invalid, it names a Secret it may not
    use, or it is over a quota. `catalog_only`: every problem is a catalog rule's, so a
    catalog change alone may have caused it (see reconcile.realtime)."""

    reason: str
    message: str
    catalog_only: bool = False


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def applications(kube: Cluster, namespace: str) -> dict[tuple[str, str], KnownApplication]:
    return index_applications(kube.list_objects(API_VERSION, KIND_APPLICATION, namespace))


def quota_message(kube: Cluster, catalog: Catalog, obj: Mapping[str, Any]) -> str | None:
    """Why this object is beyond its namespace's quota (the oldest objects win), if it is."""
    meta = obj["metadata"]
    namespace = kube.get("v1", "Namespace", None, meta["namespace"]) or {}
    limits, _ = limits_for(catalog.quotas, (namespace.get("metadata") or {}).get("annotations"))
    siblings = kube.list_objects(API_VERSION, obj["kind"], meta["namespace"])
    return over_quota(obj["kind"], siblings, limits).get(meta["name"])


def _text(findings: Sequence[tuple[str, str]]) -> str:
    return "; ".join(f"{path}: {message}" for path, message in findings[:MAX_MESSAGE_PROBLEMS])


def blocker(kube: Cluster, catalog: Catalog, obj: Mapping[str, Any], apps: Apps) -> Blocker | None:
    problems = validate_object(obj, ValidationContext(catalog=catalog, applications=apps))
    if problems:
        catalog_only = set(problems) <= set(catalog_problems(obj, catalog))
        text = _text([(p.path, p.message) for p in problems])
        return Blocker(phases.INVALID_SPEC, text, catalog_only)
    refused = list(secret_rules(secret_references(obj, apps), secret_states(kube, obj, apps)))
    if refused:
        return Blocker(phases.SECRET_NOT_USABLE, _text(refused))
    quota = quota_message(kube, catalog, obj)
    if quota:
        return Blocker(phases.QUOTA_EXCEEDED, quota)
    return None


def status_fields(status: ApiModel) -> dict[str, Any]:
    """The status as it is patched: the fields the model sets, camelCase, nulls left out."""
    return status.model_dump(by_alias=True, exclude_unset=True, exclude_none=True, mode="json")


def write_status(
    kube: Cluster, obj: Mapping[str, Any], status: ApiModel, cleared: tuple[str, ...] = ()
) -> Outcome:
    """Patches the fields the status model sets, when any of them changed, and removes the
    `cleared` ones that the status still has (a merge patch removes a field set to null)."""
    fields: dict[str, Any] = status_fields(status)
    old = obj.get("status") or {}
    fields.update({k: None for k in cleared if old.get(k) is not None and k not in fields})
    meta = obj["metadata"]
    if any(old.get(k) != v for k, v in fields.items()):
        kube.patch_status(obj["kind"], meta["namespace"], meta["name"], fields)
    ready = condition(fields.get("conditions"), phases.READY).get("reason")
    was = condition(old.get("conditions"), phases.READY).get("reason")
    return Outcome(
        obj,
        old.get("phase"),
        fields.get("phase"),
        str(fields.get("message", "")),
        reason=str(ready) if ready else None,
        old_reason=str(was) if was else None,
    )


def verdict_status(
    kind: str,
    old: Mapping[str, Any] | None,
    generation: int | None,
    verdict: Verdict[Any],
    now: datetime.datetime,
) -> RealTimeServiceStatus | BatchServiceStatus:
    """A service's status with only the verdict's phase, conditions and message: what its
    children report (traffic, readiness, progress) stays as it was written."""
    conditions = mark((old or {}).get("conditions"), verdict, generation=generation, now=now)
    model = RealTimeServiceStatus if kind == KIND_REALTIME else BatchServiceStatus
    return model(
        phase=verdict.phase,
        conditions=conditions,
        observed_generation=generation,
        message=verdict.message,
    )


def blocked_status(
    kind: str,
    old: Mapping[str, Any] | None,
    generation: int | None,
    *,
    reason: str,
    message: str,
    now: datetime.datetime,
) -> RealTimeServiceStatus | BatchServiceStatus:
    """Failed with a blocking reason and a message naming the field."""
    verdict: Verdict[Literal["Failed"]] = Verdict(phases.FAILED, reason, message)
    return verdict_status(kind, old, generation, verdict, now)


def write_blocked(kube: Cluster, obj: Mapping[str, Any], block: Blocker) -> Outcome:
    status = blocked_status(
        obj["kind"],
        obj.get("status"),
        obj["metadata"].get("generation"),
        reason=block.reason,
        message=block.message,
        now=now(),
    )
    return write_status(kube, obj, status)
