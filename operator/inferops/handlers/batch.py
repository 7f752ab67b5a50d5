"""BatchService: create the Job, follow suspension, report progress from the workers."""

from __future__ import annotations

from typing import Any

import kopf

from inferops.api.kinds import BATCH
from inferops.api.names import GROUP, KIND_BATCH, LABEL_OWNER_KIND, LABEL_OWNER_NAME, VERSION
from inferops.handlers import events
from inferops.handlers.coalesce import Coalescer, refresh
from inferops.handlers.metrics import timed
from inferops.reconcile.batch import reconcile_batch, refresh_batch_status

KIND = KIND_BATCH
RESOURCE = (GROUP, VERSION, BATCH.plural)
CHILDREN = {LABEL_OWNER_KIND: KIND_BATCH}
TIMER_SECONDS = 15
# Child events of one owner within this many seconds share one status refresh.
REFRESH = Coalescer(0.5)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
def reconcile(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    with timed(KIND):
        events.report(reconcile_batch(memo.kube, memo.catalog, str(namespace), name))


@kopf.on.event("batch", "v1", "jobs", labels=CHILDREN)
@kopf.on.event("", "v1", "pods", labels=CHILDREN)
async def child_changed(labels: kopf.Labels, namespace: str | None, memo: Any, **_: Any) -> None:
    owner = labels.get(LABEL_OWNER_NAME)
    if owner:
        await refresh(
            REFRESH,
            KIND,
            (namespace, owner),
            lambda: events.report(refresh_batch_status(memo.kube, str(namespace), owner)),
        )


@kopf.timer(
    *RESOURCE,
    interval=TIMER_SECONDS,
    initial_delay=TIMER_SECONDS,
    when=lambda status, **_: status.get("phase") == "Deploying",
)
def deadline(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    events.report(refresh_batch_status(memo.kube, str(namespace), name))
