"""Posts a reconcile's events (phase transitions, causes, pruning, app version verdicts)
on its object, counts the transitions and keeps each service's phase and reason for the
`inferops_services` gauge."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from inferops.api.names import KIND_BATCH, KIND_REALTIME
from inferops.handlers.metrics import REASONS, SERVICES, TRANSITIONS
from inferops.reconcile.common import Outcome

SERVICE_KINDS = (KIND_REALTIME, KIND_BATCH)


def _ref(obj: Mapping[str, Any]) -> kopf.Body:
    meta = obj["metadata"]
    # kopf posts events for any object reference; a plain dict is what it reads.
    return {  # type: ignore[return-value]
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
    }


def report(outcome: Outcome | None) -> None:
    if outcome is None:
        return
    kind = str(outcome.obj.get("kind"))
    if outcome.phase_changed:
        TRANSITIONS.labels(kind, str(outcome.phase)).inc()
    if kind in SERVICE_KINDS and outcome.phase and outcome.reason:
        meta = outcome.obj["metadata"]
        SERVICES.set((kind, meta["namespace"], meta["name"]), outcome.phase, outcome.reason)
        if outcome.reason != outcome.old_reason:
            REASONS.labels(kind, outcome.reason).inc()
    for event in outcome.events():
        post = kopf.warn if event.warning else kopf.info
        post(_ref(outcome.obj), reason=event.reason, message=event.message)
