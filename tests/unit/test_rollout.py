"""The rollout state machine, one row per transition: the clock and the router's readings
are inputs, and every status goes through its JSON form first, as after an operator
restart (the machine resumes from status alone)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from inferops.api.rollout import Rollout, RolloutStatus
from inferops.reconcile.rollout import (
    Decision,
    Reading,
    Window,
    decide,
    rollout_id,
    step_ratios,
)

OLD, NEW = "iris:1.0.0", "iris:2.0.0"
T0 = datetime(2026, 11, 30, 9, 0, 0, tzinfo=UTC)
BEFORE = {OLD: 100, NEW: 0}
TARGET = {OLD: 0, NEW: 100}


def rollout(**change: Any) -> Rollout:
    spec: dict[str, Any] = {
        "version": NEW,
        "steps": [
            {"percent": 5, "bakeSeconds": 300},
            {"percent": 25, "bakeSeconds": 300},
            {"percent": 100, "bakeSeconds": 0},
        ],
        "gates": {"maxErrorRatePercent": 5, "maxLatencyMs": 500, "minRequests": 100},
    }
    spec.update(change)
    return Rollout.model_validate(spec)


def good(requests: int = 200) -> Reading:
    return Reading(Window(requests, 1, 120.0), Window(requests * 10, 10, 100.0))


def bad_errors() -> Reading:
    return Reading(Window(200, 40, 120.0), Window(2000, 10, 100.0))


@dataclass
class Run:
    """Drives `decide` through a sequence of moments, the status persisted in between."""

    spec: Rollout | None = field(default_factory=rollout)
    target: dict[str, int] = field(default_factory=lambda: dict(TARGET))
    status: RolloutStatus | None = None
    running: dict[str, int] | None = field(default_factory=lambda: dict(BEFORE))

    def at(self, seconds: float, reading: Reading | None = None) -> Decision:
        previous = self.status
        if previous is not None:  # what a restarted operator reads back
            previous = RolloutStatus.model_validate(previous.to_dict())
        decision = decide(
            self.spec,
            self.target,
            previous=previous,
            running=self.running,
            reading=reading,
            now=T0 + timedelta(seconds=seconds),
        )
        self.status, self.running = decision.status, decision.ratios
        return decision


def test_without_a_rollout_the_target_ratios_apply_at_once() -> None:
    d = Run(spec=None).at(0)
    assert (d.status, d.ratios, d.event) == (None, TARGET, None)


def test_a_rollout_starts_from_the_ratios_that_run_and_gives_the_first_step() -> None:
    d = Run().at(0)
    assert d.ratios == {OLD: 95, NEW: 5}
    assert d.status is not None and d.status.phase == "Progressing" and d.status.step == 0
    assert d.status.from_map() == BEFORE and d.status.started == "2026-11-30T09:00:00Z"
    assert d.event is not None and d.event.reason == "RolloutStarted"
    assert d.recheck == 5.0


@pytest.mark.parametrize("running", [None, TARGET])
def test_nothing_to_roll_out_for_a_new_service_or_one_on_target(
    running: dict[str, int] | None,
) -> None:
    d = Run(running=running).at(0)
    assert d.status is not None and d.status.phase == "Succeeded" and d.ratios == TARGET


def test_a_good_version_goes_through_every_step_to_the_target() -> None:
    run = Run()
    run.at(0)
    d = run.at(100, good())  # baking: the gates read, the step holds
    assert d.ratios == {OLD: 95, NEW: 5} and d.status is not None
    assert d.status.phase == "Progressing" and d.event is None
    assert [g.gate for g in d.status.gates] == ["maxErrorRatePercent", "maxLatencyMs"]
    assert all(g.passed for g in d.status.gates) and d.recheck == 5.0
    d = run.at(300, good())
    assert d.ratios == {OLD: 75, NEW: 25} and d.event is not None
    assert d.event.reason == "RolloutStepped" and d.status is not None
    assert d.status.step == 1 and d.status.step_started == "2026-11-30T09:05:00Z"
    d = run.at(600, good())
    assert d.ratios == TARGET and d.status is not None and d.status.step == 2
    d = run.at(601, good())  # the last step: bake 0, its requests gathered
    assert d.status is not None and d.status.phase == "Succeeded" and d.ratios == TARGET
    assert d.event is not None and d.event.reason == "RolloutSucceeded"
    assert run.at(5000).ratios == TARGET  # and it stays


def test_an_error_rate_breach_rolls_back_at_once_with_the_measure() -> None:
    run = Run()
    run.at(0)
    d = run.at(20, bad_errors())
    assert d.ratios == BEFORE and d.status is not None and d.status.phase == "RolledBack"
    assert d.event is not None and d.event.type == "Warning"
    assert d.event.reason == "RolloutRolledBack"
    assert "maxErrorRatePercent 20 > 5" in d.status.message
    assert "traffic back to iris:1.0.0=100,iris:2.0.0=0" in d.status.message
    # It stays rolled back, whatever is measured, until the spec changes.
    assert run.at(10_000, good()).ratios == BEFORE
    assert run.status is not None and run.status.phase == "RolledBack"


def test_relative_gates_compare_with_the_stable_versions() -> None:
    run = Run(spec=rollout(gates={"maxLatencyIncreasePercent": 50, "maxErrorRateIncrease": 1}))
    run.at(0)
    slow = Reading(Window(200, 0, 180.0), Window(2000, 0, 100.0))
    d = run.at(30, slow)
    assert d.status is not None and d.status.phase == "RolledBack"
    assert "maxLatencyIncreasePercent 80 > 50" in d.status.message


def test_too_few_requests_never_breach_and_a_step_waits_then_fails() -> None:
    run = Run()
    run.at(0)
    few = Reading(Window(50, 50, 900.0), Window(100, 0, 100.0))  # all errors, but only 50
    d = run.at(100, few)
    assert d.status is not None and d.status.phase == "Progressing" and d.status.gates == []
    d = run.at(400, few)  # bake over, 50 of 100 requests
    assert d.status is not None and d.status.phase == "Waiting"
    assert "waiting for 100" in d.status.message and d.ratios == {OLD: 95, NEW: 5}
    d = run.at(3600, few)
    assert d.status is not None and d.status.phase == "Failed" and d.ratios == BEFORE
    assert d.event is not None and d.event.reason == "RolloutFailed"
    assert "gathered 50 of 100 requests in stepTimeoutSeconds (3600)" in d.status.message


def test_pause_holds_the_step_and_resume_bakes_it_again() -> None:
    run = Run()
    run.at(0)
    run.spec = rollout(paused=True)
    d = run.at(200, good())
    assert d.status is not None and d.status.phase == "Paused" and d.ratios == {OLD: 95, NEW: 5}
    assert d.event is not None and d.event.reason == "RolloutPaused" and d.recheck is None
    assert run.at(5000, good()).event is None  # still paused: nothing new to say
    run.spec = rollout()  # resumed: the step's bake starts again
    d = run.at(5100, good())
    assert d.status is not None and d.status.phase == "Progressing" and d.status.step == 0
    assert d.status.step_started == "2026-11-30T10:25:00Z"
    assert run.at(5400, good()).ratios == {OLD: 75, NEW: 25}


def test_pausing_or_changing_gates_is_the_same_rollout_a_new_target_is_another() -> None:
    assert rollout_id(rollout(), TARGET) == rollout_id(rollout(paused=True), TARGET)
    assert rollout_id(rollout(), TARGET) == rollout_id(
        rollout(gates={"maxErrorRatePercent": 1}), TARGET
    )
    assert rollout_id(rollout(), TARGET) != rollout_id(rollout(), {OLD: 50, NEW: 50})


def test_after_a_rollback_a_new_spec_starts_a_new_rollout_from_what_runs() -> None:
    run = Run()
    run.at(0)
    run.at(20, bad_errors())
    run.target = {OLD: 50, NEW: 50}
    run.spec = rollout(steps=[{"percent": 10, "bakeSeconds": 60}, {"percent": 50}])
    d = run.at(30)
    assert d.status is not None and d.status.phase == "Progressing"
    assert d.status.from_map() == BEFORE and d.ratios == {OLD: 90, NEW: 10}


def test_reverting_the_spec_stops_the_rollout_and_returns_to_the_ratios_before() -> None:
    run = Run()
    run.at(0)
    run.at(400, good())  # step 2: 75/25
    run.spec, run.target = None, dict(BEFORE)  # git revert: no rollout, the old ratios
    d = run.at(500)
    assert (d.status, d.ratios) == (None, BEFORE)


@pytest.mark.parametrize(
    ("before", "target", "candidate", "percent", "expected"),
    [
        ({"a": 100, "b": 0}, {"a": 0, "b": 100}, "b", 5, {"a": 95, "b": 5}),
        # the others keep their proportions from before
        (
            {"a": 60, "b": 40, "c": 0},
            {"a": 30, "b": 20, "c": 50},
            "c",
            10,
            {"a": 54, "b": 36, "c": 10},
        ),
        # largest remainders: 70 split 1:1:1 is 24/23/23, always 100 in all
        (
            {"a": 34, "b": 33, "c": 33, "d": 0},
            {"a": 0, "b": 0, "c": 0, "d": 100},
            "d",
            30,
            {"a": 24, "b": 23, "c": 23, "d": 30},
        ),
        # others that had nothing before share by the target's proportions
        (
            {"a": 0, "b": 0, "c": 0},
            {"a": 40, "b": 40, "c": 20},
            "a",
            20,
            {"a": 20, "b": 53, "c": 27},
        ),
    ],
)
def test_step_ratios(
    before: dict[str, int],
    target: dict[str, int],
    candidate: str,
    percent: int,
    expected: dict[str, int],
) -> None:
    got = step_ratios(before, target, candidate, percent)
    assert got == expected and sum(got.values()) == 100


def shadow_first(**gates: Any) -> Rollout:
    return rollout(
        steps=[
            {"percent": 0, "shadowPercent": 50, "bakeSeconds": 300},
            {"percent": 10, "bakeSeconds": 300},
            {"percent": 100, "bakeSeconds": 0},
        ],
        gates={"minAgreementPercent": 95, "minRequests": 100, **gates},
    )


def agreeing(same: int, compared: int = 200) -> Reading:
    return Reading(Window(compared, 0, 100.0), Window(2000, 0, 100.0), agreement=(same, compared))


def test_a_shadow_step_keeps_the_ratios_and_gates_on_agreement_first() -> None:
    run = Run(spec=shadow_first())
    d = run.at(0)
    assert d.ratios == BEFORE and d.status is not None  # no share while it is a shadow
    assert d.status.summary == "Progressing 1/3 iris:2.0.0 shadow 50%"
    assert "iris:2.0.0 as a shadow of 50% of the requests" in d.status.message
    d = run.at(100, agreeing(198))
    assert d.status is not None and d.status.gates[0].gate == "minAgreementPercent"
    assert d.status.gates[0].passed and d.ratios == BEFORE
    d = run.at(300, agreeing(198))  # agreed: its first share
    assert d.ratios == {OLD: 90, NEW: 10}
    assert d.event is not None
    assert d.event.message.endswith("(gates held: minAgreementPercent 99 >= 95)")


def test_a_shadow_that_disagrees_never_gets_a_share() -> None:
    run = Run(spec=shadow_first())
    run.at(0)
    d = run.at(60, agreeing(180))
    assert d.status is not None and d.status.phase == "RolledBack" and d.ratios == BEFORE
    assert "minAgreementPercent 90 < 95" in d.status.message


def test_a_rollout_waits_pending_until_the_new_version_is_ready() -> None:
    d = decide(
        rollout(),
        TARGET,
        previous=None,
        running=BEFORE,
        reading=None,
        now=T0,
        candidate_ready=False,
    )
    assert d.status is not None and d.status.phase == "Pending" and d.ratios == BEFORE
    assert d.event is None and d.recheck == 5.0
    pending = RolloutStatus.model_validate(d.status.to_dict())
    later = T0 + timedelta(seconds=90)
    d = decide(rollout(), TARGET, previous=pending, running=BEFORE, reading=None, now=later)
    assert d.status is not None and d.status.phase == "Progressing"
    assert d.ratios == {OLD: 95, NEW: 5} and d.status.started == "2026-11-30T09:01:30Z"
    assert d.status.from_map() == BEFORE
