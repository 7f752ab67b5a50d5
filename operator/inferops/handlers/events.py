"""Kubernetes Events on the custom resources, for phase transitions and pruning."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from inferops.handlers.metrics import TRANSITIONS

WARNING_PHASES = frozenset({"Failed", "Abnormal"})


def _ref(obj: Mapping[str, Any]) -> kopf.Body:
    meta = obj["metadata"]
    # kopf posts events for any object reference; a plain dict is what it reads.
    return {  # type: ignore[return-value]
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
    }


def phase_changed(obj: Mapping[str, Any], old: str | None, new: str | None, message: str) -> None:
    if new is None or new == old:
        return
    TRANSITIONS.labels(str(obj.get("kind")), new).inc()
    text = f"{old or 'new'} -> {new}: {message}" if message else f"{old or 'new'} -> {new}"
    if new in WARNING_PHASES:
        kopf.warn(_ref(obj), reason=new, message=text)
    else:
        kopf.info(_ref(obj), reason=new, message=text)


def pruned(obj: Mapping[str, Any], children: tuple[str, ...]) -> None:
    for child in children:
        kopf.info(_ref(obj), reason="Pruned", message=f"deleted {child}: no longer in the spec")
