"""Posts a reconcile's events (phase transitions, pruning, app version verdicts) on its
object, and counts the transitions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from inferops.handlers.metrics import TRANSITIONS
from inferops.reconcile.common import Outcome


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
    if outcome.phase_changed:
        TRANSITIONS.labels(str(outcome.obj.get("kind")), str(outcome.phase)).inc()
    for event in outcome.events():
        post = kopf.warn if event.warning else kopf.info
        post(_ref(outcome.obj), reason=event.reason, message=event.message)
