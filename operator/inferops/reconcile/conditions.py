"""Kubernetes-style conditions: set one, keeping lastTransitionTime when nothing changed."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from inferops.api.realtime import TIMEOUT_DEFAULT

Condition = dict[str, Any]


TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now() -> str:
    return format_time(datetime.datetime.now(datetime.UTC))


def format_time(moment: datetime.datetime) -> str:
    return moment.strftime(TIME_FORMAT)


def parse_time(text: Any) -> datetime.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=datetime.UTC)
    except ValueError:
        return None


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


def rollout_start(
    conditions: Sequence[Mapping[str, Any]] | None, generation: int | None
) -> datetime.datetime | None:
    """When the rollout of this generation began (Progressing True since), if it is on."""
    progressing = condition(conditions, "Progressing")
    if progressing.get("observedGeneration") != generation or progressing.get("status") != "True":
        return None
    return parse_time(progressing.get("lastTransitionTime"))


def until_deadline(obj: Mapping[str, Any], now: datetime.datetime) -> float:
    """Seconds until this generation's timeoutMinutes runs out: from its rollout's start,
    or from now when none has started yet (the pass that starts it runs now)."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    minutes = spec.get("timeoutMinutes")
    if not isinstance(minutes, int) or isinstance(minutes, bool):
        minutes = TIMEOUT_DEFAULT
    generation = (obj.get("metadata") or {}).get("generation")
    started = rollout_start(status.get("conditions"), generation) or now
    return max(0.0, (started + datetime.timedelta(minutes=minutes) - now).total_seconds())


def lifecycle(
    conditions: Sequence[Mapping[str, Any]] | None,
    *,
    ready: bool,
    progressing: bool,
    reason: str,
    message: str,
    generation: int | None,
    timestamp: str,
    progressing_reason: str | None = None,
    new_rollout: bool = False,
) -> list[Condition]:
    """Ready and Progressing together, as every kind reports them."""
    updated = set_condition(
        conditions,
        "Ready",
        ready,
        reason=reason,
        message=message,
        generation=generation,
        timestamp=timestamp,
    )
    return set_condition(
        updated,
        "Progressing",
        progressing,
        reason=progressing_reason or reason,
        message=message,
        generation=generation,
        timestamp=timestamp,
        reset=new_rollout and progressing,
    )
