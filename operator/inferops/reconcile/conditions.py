"""Kubernetes-style conditions: set one, keeping lastTransitionTime when nothing changed."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

Condition = dict[str, Any]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    type_: str,
    status: bool | None,
    *,
    reason: str,
    message: str,
    generation: int | None,
    timestamp: str | None = None,
    reset: bool = False,
) -> list[Condition]:
    """The conditions with `type_` set; the transition time moves only when status does.

    `reset` moves it anyway (a new rollout starts its clock even if it was already True).
    """
    text = "Unknown" if status is None else "True" if status else "False"
    existing = {c.get("type"): dict(c) for c in conditions or () if isinstance(c, Mapping)}
    previous = existing.get(type_)
    changed = reset or previous is None or previous.get("status") != text
    existing[type_] = {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": (timestamp or now())
        if changed
        else previous.get("lastTransitionTime") or timestamp or now(),  # type: ignore[union-attr]
    }
    return list(existing.values())


def condition(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any]:
    """One condition by type (empty when absent)."""
    return next((c for c in conditions or () if c.get("type") == type_), {})
