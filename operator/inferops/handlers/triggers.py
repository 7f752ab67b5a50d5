"""What queues a pass: any event of our three kinds or of a labelled child.

The handlers only name objects (see `handlers.controller`); they run on the event loop
and never call the API. Importing this module registers them and the caches' indexes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

import kopf

from inferops.api import phases
from inferops.api.names import (
    API_VERSION,
    KIND_APPLICATION,
    KIND_BATCH,
    KIND_REALTIME,
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
)
from inferops.handlers import cache
from inferops.handlers.controller import CHILD_DELAY, controller
from inferops.handlers.metrics import REFRESHES
from inferops.handlers.workqueue import Key
from inferops.reconcile.conditions import condition
from inferops.resources.labels import MANAGED_BY

SERVICE_KINDS = (KIND_REALTIME, KIND_BATCH)


def applications_named(obj: Mapping[str, Any]) -> set[str]:
    """The AIApplications a service's spec names."""
    spec = obj.get("spec") or {}
    names = {str(spec["application"])} if isinstance(spec.get("application"), str) else set()
    for version in spec.get("versions") or ():
        if isinstance(version, Mapping) and isinstance(version.get("application"), str):
            names.add(version["application"])
    return names


def _quota_blocked(obj: Mapping[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions")
    return condition(conditions, phases.READY).get("reason") == phases.QUOTA_EXCEEDED


def followers(
    siblings: Callable[[str], Iterable[Mapping[str, Any]]],
    kind: str,
    deleted: bool,
    namespace: str,
    name: str,
) -> list[Key]:
    """Other objects an event concerns: every service naming a changed or deleted
    application; a deleted service's quota-blocked siblings (it freed a place, and the
    oldest blocked one takes it). `siblings(kind)`: that kind's objects in the namespace."""
    if kind == KIND_APPLICATION:
        return [
            (service_kind, namespace, obj["metadata"]["name"])
            for service_kind in SERVICE_KINDS
            for obj in siblings(service_kind)
            if name in applications_named(obj)
        ]
    if deleted:
        return [
            (kind, namespace, o["metadata"]["name"]) for o in siblings(kind) if _quota_blocked(o)
        ]
    return []


def _own_event(kind: str) -> Any:
    async def own_changed(
        type: str | None, body: kopf.Body, namespace: str | None, name: str, memo: Any, **kw: Any
    ) -> None:
        ctl = controller(memo)
        ctl.bind(kw)
        namespace = str(namespace)
        deleted = type == "DELETED"
        if not deleted:
            if ctl.writes.echo(body):
                return  # the status we just wrote, coming back
            ctl.queue.add((kind, namespace, name))
        siblings = partial(ctl.caches.objects, namespace=namespace)
        for key in followers(siblings, kind, deleted, namespace, name):
            ctl.queue.add(key)

    return own_changed


def _owner_changed(memo: Any, kwargs: Mapping[str, Any], child: Mapping[str, Any]) -> None:
    """A child changed or appeared: its owner gets a pass (one for a burst)."""
    labels = child["metadata"].get("labels") or {}
    owner_kind, owner = labels.get(LABEL_OWNER_KIND), labels.get(LABEL_OWNER_NAME)
    ctl = controller(memo)
    ctl.bind(kwargs)
    if owner_kind not in SERVICE_KINDS or not owner or ctl.writes.echo(child):
        return
    key = (str(owner_kind), str(child["metadata"].get("namespace")), str(owner))
    queued = ctl.queue.add_after(key, CHILD_DELAY)
    REFRESHES.labels(str(owner_kind), "run" if queued else "coalesced").inc()


async def child_deleted(body: kopf.Body, memo: Any, **kw: Any) -> None:
    """A child deleted (by hand, or pruned by a pass): its owner gets a pass, which
    applies it again if it is still desired."""
    _owner_changed(memo, kw, body)


def _deleted(type: str | None, **_: Any) -> bool:
    return type == "DELETED"


def register() -> None:
    cache.register(_owner_changed)
    for kind in cache.OWN_KINDS:
        kopf.on.event(*cache.resource(API_VERSION, kind), id=f"own_{kind.lower()}")(
            _own_event(kind)
        )
    for api_version, kind in cache.CHILD_RESOURCES:
        kopf.on.event(
            *cache.resource(api_version, kind),
            labels={LABEL_MANAGED_BY: MANAGED_BY},
            when=_deleted,
            id=f"child_deleted_{kind.lower()}",
        )(child_deleted)


register()
