"""The controller: events name objects, workers give each named object one pass.

Kopf delivers the events (our three kinds, their labelled children) and keeps the caches;
every handler only queues the object's key. A fixed number of workers take keys from the
fair queue and run one level-based pass per key: the reconciler of its kind over a view
of the caches (`reconcile.view`), so a pass over an unchanged object makes no API request.
Follow-ups are queued too: a Deploying object is looked at again for its deadline, one
waiting on the cluster (a quota, the Gateway API, a Secret) is retried, and a pass that
failed is retried with a growing delay.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from inferops.api import phases
from inferops.api.catalog import Catalog
from inferops.api.names import (
    KIND_APPLICATION,
    KIND_BATCH,
    KIND_REALTIME,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
)
from inferops.handlers import events
from inferops.handlers.cache import CHILD_RESOURCES, SELECTOR, Caches
from inferops.handlers.informer import Informers
from inferops.handlers.metrics import QUEUE_DEPTH, REFRESHES, SERVICES, timed
from inferops.handlers.workqueue import Key, WorkQueue, work
from inferops.reconcile.application import reconcile_application
from inferops.reconcile.batch import reconcile_batch
from inferops.reconcile.common import Outcome, now
from inferops.reconcile.conditions import until_deadline
from inferops.reconcile.errors import write_error
from inferops.reconcile.kube import Cluster, Kube, new_api_client
from inferops.reconcile.realtime import reconcile_realtime
from inferops.reconcile.view import Discovery, RecentWrites, ViewCluster

logger = logging.getLogger(__name__)

# Passes at once. Each is mostly waiting for the API server; more would only queue there.
WORKERS = 4
# Child events of one owner within this many seconds share one pass.
CHILD_DELAY = 0.5
# A Deploying object is looked at again this long after its timeoutMinutes runs out (time
# passing is not an event); before that, its children's events bring its passes.
DEADLINE_MARGIN = 1.0
# Blocked by the cluster (a quota, missing CRDs, unusable Secrets): retried this often, so
# a raised quota or newly installed CRDs are noticed without any event on the object.
RETRY_SECONDS = 30.0
# A pass that raised is retried after these delays (the last one repeats).
ERROR_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

Reconciler = Callable[[Cluster, Catalog, str, str], Outcome | None]
RECONCILERS: Mapping[str, Reconciler] = {
    KIND_REALTIME: reconcile_realtime,
    KIND_BATCH: reconcile_batch,
    KIND_APPLICATION: lambda kube, _, namespace, name: reconcile_application(kube, namespace, name),
}


def follow_up(outcome: Outcome | None) -> float | None:
    """When to look at the object again without an event, if at all: its deadline while
    Deploying, sooner when its pods' story changes with time alone (`causes.recheck_in`).
    Not every few seconds while Deploying: with a thousand services rolling out, such
    polls were passes that grew with the time the control plane took."""
    if outcome is None:
        return None
    if outcome.reason in phases.WAITING_ON_CLUSTER:
        return RETRY_SECONDS
    due = [] if outcome.recheck is None else [outcome.recheck]
    if outcome.phase == phases.DEPLOYING:
        due.append(until_deadline(outcome.obj, now()) + DEADLINE_MARGIN)
    return min(due, default=None)


@dataclass
class Controller:
    kube: Cluster
    catalog: Catalog
    caches: Caches = field(default_factory=Caches)
    queue: WorkQueue = field(default_factory=WorkQueue)
    writes: RecentWrites = field(default_factory=RecentWrites)
    failures: dict[Key, int] = field(default_factory=dict)
    discovery: Discovery | None = None
    # A handler's context: Kopf posts Kubernetes Events from the context it gives its
    # handlers, and the workers are not handlers.
    context: contextvars.Context | None = None
    # Set once the children are in the caches (at once when Kopf's indexes hold them: Kopf
    # runs no handler before its indexes are filled).
    synced: asyncio.Event = field(default_factory=lambda: _set(asyncio.Event()))

    def bind(self, kwargs: Mapping[str, Any]) -> None:
        """Called by every handler: keeps the indexes and a handler's context."""
        self.caches.bind(kwargs)
        if self.context is None:
            self.context = contextvars.copy_context()

    def report(self, outcome: Outcome | None) -> None:
        if self.context is None:
            events.report(outcome)
        else:
            self.context.run(events.report, outcome)

    def child_changed(self, child: Mapping[str, Any]) -> None:
        """A child appeared, changed or was deleted (by hand, or pruned by a pass): its
        owner gets a pass (one for a burst), which applies it again if still desired."""
        labels = child["metadata"].get("labels") or {}
        owner_kind, owner = labels.get(LABEL_OWNER_KIND), labels.get(LABEL_OWNER_NAME)
        if owner_kind not in (KIND_REALTIME, KIND_BATCH) or not owner or self.writes.echo(child):
            return
        key = (str(owner_kind), str(child["metadata"].get("namespace")), str(owner))
        queued = self.queue.add_after(key, CHILD_DELAY)
        REFRESHES.labels(str(owner_kind), "run" if queued else "coalesced").inc()

    async def _tell(self, cluster: Cluster, key: Key, exc: Exception, delay: float) -> None:
        """A failed pass of a service lands in its status and as an Event."""
        kind, namespace, name = key
        if kind == KIND_APPLICATION:
            return
        try:
            outcome = await asyncio.to_thread(write_error, cluster, key, exc, delay)
        except Exception as again:
            logger.warning("%s %s/%s: could not write why: %s", kind, namespace, name, again)
            return
        self.report(outcome)

    async def handle(self, key: Key) -> None:
        kind, namespace, name = key
        # Until every child kind is listed, a pass would take missing children for absent.
        await self.synced.wait()
        # Taken on the event loop, where Kopf changes the indexes: a consistent snapshot.
        view = self.writes.merge(self.caches.view(kind, namespace, name))
        if self.discovery is None:
            self.discovery = Discovery(self.kube)
        cluster = ViewCluster(self.kube, view, self.writes, self.discovery)
        try:
            with timed(kind):
                outcome = await asyncio.to_thread(
                    RECONCILERS[kind], cluster, self.catalog, namespace, name
                )
        except Exception as exc:
            failures = self.failures.get(key, 0)
            self.failures[key] = failures + 1
            delay = ERROR_DELAYS[min(failures, len(ERROR_DELAYS) - 1)]
            logger.exception("%s %s/%s: pass failed, retrying in %ss", kind, namespace, name, delay)
            self.queue.add_after(key, delay)
            await self._tell(cluster, key, exc, delay)
            return
        finally:
            QUEUE_DEPTH.set(len(self.queue))
        self.failures.pop(key, None)
        if outcome is None:
            SERVICES.drop(key)  # gone
        self.report(outcome)
        again = follow_up(outcome)
        if again is not None:
            self.queue.add_after(key, again)


def _set(event: asyncio.Event) -> asyncio.Event:
    event.set()
    return event


def controller(memo: Any) -> Controller:
    found: Controller = memo.controller
    return found


@kopf.on.startup()
async def start(memo: kopf.Memo, **_: Any) -> None:
    memo.kube = kube = Kube(new_api_client())
    memo.controller = ctl = Controller(kube, memo.catalog)
    if getattr(memo, "peering", None):
        ctl.synced.set()
    else:
        memo.informers = informers = Informers(
            kube.api,
            CHILD_RESOURCES,
            getattr(memo, "namespaces", ()),
            selector=SELECTOR,
            hook=ctl.child_changed,
            loop=asyncio.get_running_loop(),
        )
        ctl.caches.stores = informers.stores
        ctl.synced = informers.synced
        informers.start()
    memo.workers = [asyncio.create_task(work(ctl.queue, ctl.handle)) for _ in range(WORKERS)]


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    if hasattr(memo, "informers"):
        memo.informers.stop()
    workers = getattr(memo, "workers", [])
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    if hasattr(memo, "controller"):
        memo.controller.queue.close()
