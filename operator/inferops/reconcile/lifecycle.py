"""The status lifecycle every kind shares: a verdict (phase, reason, message, whether Ready
and Progressing) and the conditions it marks for one generation.

A kind's status module decides the verdict from what it observed, in a short table of
rules; this module turns the verdict into Ready and Progressing conditions, each carrying
observedGeneration, with transition times that move only when a status flips.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from inferops.api import phases
from inferops.api.base import Condition
from inferops.reconcile.conditions import format_time, set_condition

Facts = TypeVar("Facts")
# A kind's phase type (a Literal of the api's status model), so verdicts type-check there.
P = TypeVar("P", bound=str)


@dataclass(frozen=True)
class Verdict(Generic[P]):
    """Where an object stands: its phase and the reason and message of its conditions."""

    phase: P
    reason: str
    message: str
    ready: bool = False
    progressing: bool = False
    # The Progressing condition's reason when it differs from `reason`.
    progressing_reason: str | None = None


@dataclass(frozen=True)
class Rule(Generic[Facts, P]):
    """One row of a decision table: when `applies`, the verdict is `verdict(facts)`."""

    applies: Callable[[Facts], bool]
    verdict: Callable[[Facts], Verdict[P]]


def decide(rules: Sequence[Rule[Facts, P]], facts: Facts) -> Verdict[P]:
    """The verdict of the first rule that applies (the last rule must always apply)."""
    for rule in rules:
        if rule.applies(facts):
            return rule.verdict(facts)
    raise LookupError("no rule applies: a decision table must end with a catch-all")


def always(_: object) -> bool:
    return True


def mark(
    old_conditions: Sequence[Mapping[str, Any]] | None,
    verdict: Verdict[Any],
    *,
    generation: int | None,
    now: datetime.datetime,
    new_rollout: bool = False,
) -> list[Condition]:
    """Ready and Progressing for this generation. `new_rollout` restarts Progressing's clock
    (the timeout of a new generation counts from its own start)."""
    timestamp = format_time(now)
    ready = set_condition(
        old_conditions,
        phases.READY,
        verdict.ready,
        reason=verdict.reason,
        message=verdict.message,
        generation=generation,
        timestamp=timestamp,
    )
    both = set_condition(
        ready,
        phases.PROGRESSING,
        verdict.progressing,
        reason=verdict.progressing_reason or verdict.reason,
        message=verdict.message,
        generation=generation,
        timestamp=timestamp,
        reset=new_rollout and verdict.progressing,
    )
    return [Condition.model_validate(c) for c in both]


def with_detail(message: str, detail: str) -> str:
    """`message; detail`, or the message alone when there is no detail."""
    return f"{message}; {detail}" if detail else message
