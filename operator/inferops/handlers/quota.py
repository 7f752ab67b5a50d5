"""Objects the cluster blocks, not their spec, recover when it lets them: a quota with room
again (the fallback for clusters without the webhook), the Gateway API installed, or the
Secrets they name marked usable (phases.WAITING_ON_CLUSTER)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from inferops.api import phases
from inferops.api.kinds import BATCH, REALTIME
from inferops.api.names import API_VERSION, GROUP, KIND_REALTIME, VERSION
from inferops.handlers import events
from inferops.reconcile.batch import reconcile_batch
from inferops.reconcile.common import Outcome
from inferops.reconcile.conditions import condition
from inferops.reconcile.realtime import reconcile_realtime

RETRY_SECONDS = 30


def quota_blocked(status: Mapping[str, Any], **_: Any) -> bool:
    reason = condition(status.get("conditions"), phases.READY).get("reason")
    return bool(reason == phases.QUOTA_EXCEEDED)


def waiting_on_cluster(status: Mapping[str, Any], **_: Any) -> bool:
    return condition(status.get("conditions"), phases.READY).get("reason") in (
        phases.WAITING_ON_CLUSTER
    )


def _reconcile(kind: str, memo: Any, namespace: str, name: str) -> None:
    outcome: Outcome | None
    if kind == KIND_REALTIME:
        outcome = reconcile_realtime(memo.kube, memo.catalog, namespace, name)
    else:
        outcome = reconcile_batch(memo.kube, memo.catalog, namespace, name)
    events.report(outcome)


@kopf.on.event(GROUP, VERSION, REALTIME.plural)
@kopf.on.event(GROUP, VERSION, BATCH.plural)
def sibling_deleted(type: str, body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    """A deleted service frees a place: the oldest blocked one takes it."""
    if type != "DELETED":
        return
    kind = str(body.get("kind"))
    for obj in memo.kube.list_objects(API_VERSION, kind, namespace):
        if quota_blocked(obj.get("status") or {}):
            _reconcile(kind, memo, str(namespace), obj["metadata"]["name"])


@kopf.timer(GROUP, VERSION, REALTIME.plural, interval=RETRY_SECONDS, when=waiting_on_cluster)
@kopf.timer(GROUP, VERSION, BATCH.plural, interval=RETRY_SECONDS, when=waiting_on_cluster)
def retry_blocked(body: kopf.Body, name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """A raised quota (Namespace annotation) or newly installed CRDs are noticed without
    any event on the service."""
    _reconcile(str(body.get("kind")), memo, str(namespace), name)
