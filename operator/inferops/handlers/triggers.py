"""What queues a pass: any event of our three kinds or of a labelled child.

The handlers only name objects (see `handlers.controller`); they run on the event loop
and never call the API. Importing this module registers them and the caches' indexes;
children reach `Controller.child_changed` from our informers, or with peering from Kopf.
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
)
from inferops.handlers import cache
from inferops.handlers.controller import controller
from inferops.handlers.metrics import SERVICES
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
        if deleted:
            SERVICES.drop((kind, namespace, name))
        else:
            if ctl.writes.echo(body):
                return  # the status we just wrote, coming back
            ctl.queue.add((kind, namespace, name))
        siblings = partial(ctl.caches.objects, namespace=namespace)
        for key in followers(siblings, kind, deleted, namespace, name):
            ctl.queue.add(key)

    return own_changed


def _indexed_child(memo: Any, kwargs: Mapping[str, Any], child: Mapping[str, Any]) -> None:
    ctl = controller(memo)
    ctl.bind(kwargs)
    ctl.child_changed(child)


async def _child_deleted(body: kopf.Body, memo: Any, **kw: Any) -> None:
    _indexed_child(memo, kw, body)


def _deleted(type: str | None, **_: Any) -> bool:
    return type == "DELETED"


def register() -> None:
    cache.register()
    for kind in cache.OWN_KINDS:
        kopf.on.event(*cache.resource(API_VERSION, kind), id=f"own_{kind.lower()}")(
            _own_event(kind)
        )


def children_through_kopf() -> None:
    """With peering: Kopf watches the children too (indexes, and a handler for deletions,
    which leave an index without a call), so a paused operator hears of none of them."""
    cache.register_children(_indexed_child)
    for api_version, kind in cache.CHILD_RESOURCES:
        kopf.on.event(
            *cache.resource(api_version, kind),
            labels={LABEL_MANAGED_BY: MANAGED_BY},
            when=_deleted,
            id=f"child_deleted_{kind.lower()}",
        )(_child_deleted)


register()
