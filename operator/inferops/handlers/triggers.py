"""What queues a pass: any event of our three kinds or of a labelled child.

The handlers only name objects (see `handlers.controller`); they run on the event loop
and never call the API. Importing this module registers them and the caches' indexes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
from inferops.handlers.controller import CHILD_DELAY, Controller, controller
from inferops.handlers.metrics import REFRESHES
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


def followers(ctl: Controller, kind: str, namespace: str, name: str) -> Iterator[str]:
    """Services that follow this object: an application's users; a deleted service's
    quota-blocked siblings (it freed a place: the oldest blocked one takes it)."""
    for service_kind in SERVICE_KINDS:
        for obj in ctl.caches.objects(service_kind, namespace):
            if kind == KIND_APPLICATION and name in applications_named(obj):
                yield obj["metadata"]["name"]


def _own_event(kind: str) -> Any:
    async def own_changed(
        type: str | None, body: kopf.Body, namespace: str | None, name: str, memo: Any, **kw: Any
    ) -> None:
        ctl = controller(memo)
        ctl.bind(kw)
        namespace = str(namespace)
        if type != "DELETED" and ctl.writes.echo(body):
            return  # the status we just wrote, coming back
        if type != "DELETED":
            ctl.queue.add((kind, namespace, name))
        if kind == KIND_APPLICATION:
            for service in followers(ctl, kind, namespace, name):
                for service_kind in SERVICE_KINDS:
                    ctl.queue.add((service_kind, namespace, service))
        elif type == "DELETED":
            for obj in ctl.caches.objects(kind, namespace):
                if _quota_blocked(obj):
                    ctl.queue.add((kind, namespace, obj["metadata"]["name"]))

    return own_changed


async def child_changed(
    labels: kopf.Labels, body: kopf.Body, namespace: str | None, memo: Any, **kw: Any
) -> None:
    ctl = controller(memo)
    ctl.bind(kw)
    owner_kind, owner = labels.get(LABEL_OWNER_KIND), labels.get(LABEL_OWNER_NAME)
    if owner_kind not in SERVICE_KINDS or not owner or ctl.writes.echo(body):
        return
    queued = ctl.queue.add_after((str(owner_kind), str(namespace), str(owner)), CHILD_DELAY)
    REFRESHES.labels(str(owner_kind), "run" if queued else "coalesced").inc()


def register() -> None:
    cache.register()
    for kind in cache.OWN_KINDS:
        kopf.on.event(*cache.resource(API_VERSION, kind), id=f"own_{kind.lower()}")(
            _own_event(kind)
        )
    for api_version, kind in cache.CHILD_RESOURCES:
        kopf.on.event(
            *cache.resource(api_version, kind),
            labels={LABEL_MANAGED_BY: MANAGED_BY},
            id=f"child_{kind.lower()}",
        )(child_changed)


register()
