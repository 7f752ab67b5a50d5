"""RealTimeService: reconcile on spec changes, report on child and application changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from inferops.api.kinds import APPLICATION, REALTIME
from inferops.api.names import GROUP, KIND_REALTIME, LABEL_OWNER_KIND, LABEL_OWNER_NAME, VERSION
from inferops.handlers import events
from inferops.handlers.coalesce import Coalescer, refresh
from inferops.handlers.metrics import timed
from inferops.reconcile.realtime import reconcile_realtime, refresh_realtime_status

KIND = KIND_REALTIME
RESOURCE = (GROUP, VERSION, REALTIME.plural)
CHILDREN = {LABEL_OWNER_KIND: KIND_REALTIME}
TIMER_SECONDS = 15
# Child events of one owner within this many seconds share one status refresh.
REFRESH = Coalescer(0.5)


@kopf.index(*RESOURCE)
def services_by_application(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str], str]:
    versions = spec.get("versions") or []
    return {
        (str(namespace), str(v.get("application"))): name
        for v in versions
        if isinstance(v, Mapping)
    }


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
def reconcile(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    with timed(KIND):
        events.report(reconcile_realtime(memo.kube, memo.catalog, str(namespace), name))


@kopf.on.event("apps", "v1", "deployments", labels=CHILDREN)
@kopf.on.event("", "v1", "pods", labels=CHILDREN)
async def child_changed(labels: kopf.Labels, namespace: str | None, memo: Any, **_: Any) -> None:
    owner = labels.get(LABEL_OWNER_NAME)
    if owner:
        await refresh(
            REFRESH,
            KIND,
            (namespace, owner),
            lambda: events.report(
                refresh_realtime_status(memo.kube, memo.catalog, str(namespace), owner)
            ),
        )


@kopf.timer(
    *RESOURCE,
    interval=TIMER_SECONDS,
    initial_delay=TIMER_SECONDS,
    when=lambda status, **_: status.get("phase") == "Deploying",
)
def deadline(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """Time passing is not an event: timeoutMinutes is checked while Deploying."""
    events.report(refresh_realtime_status(memo.kube, memo.catalog, str(namespace), name))


@kopf.on.event(GROUP, VERSION, APPLICATION.plural)
def application_changed(
    name: str,
    namespace: str | None,
    memo: Any,
    services_by_application: kopf.Index[tuple[str, str], str] | None = None,
    **_: Any,
) -> None:
    """A service follows its applications: re-reconcile every service naming this one."""
    if services_by_application is None:
        return
    names: set[str] = set(services_by_application.get((str(namespace), name), []))
    for service in sorted(names):
        events.report(reconcile_realtime(memo.kube, memo.catalog, str(namespace), service))
