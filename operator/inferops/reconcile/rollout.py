"""The rollout state machine: from the spec, the last status.rollout, what the router
measured over the current step and the time, the next status.rollout and the ratios the
router must run. Pure (the clock and the readings are inputs), so every transition is a
table row and a restarted operator resumes from status alone.

The spec says where a rollout ends: the versions' trafficRatio. A rollout starts from the
ratios the router runs when it appears (or when its version, target or steps change);
each step gives the new version its percent and the other versions the rest in the
proportions they had before; the last step is the target. A gate breach, or a step that
cannot gather its minimum requests in time, puts the ratios from before the rollout back
at once and keeps them until the spec changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from inferops.api.rollout import ACTIVE_PHASES, GateReading, Rollout, RolloutStatus, as_list

Ratios = dict[str, int]
POLL_SECONDS = 5.0  # how often a baking step's gates are read


@dataclass(frozen=True)
class Window:
    """What the router counted for some versions over the current step (split requests)."""

    requests: int = 0
    errors: int = 0  # 5xx
    latency_ms: float | None = None  # at the gates' quantile

    @property
    def error_percent(self) -> float:
        return 100.0 * self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Reading:
    candidate: Window
    stable: Window
    queries: Mapping[str, float | None] = field(default_factory=dict)  # gates.queries
    agreement: tuple[int, int] | None = None  # shadow steps: (same answers, compared)


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: RolloutStatus | None
    ratios: Ratios  # what the router must run
    event: Event | None = None
    recheck: float | None = None  # seconds until the next look, when time alone matters


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def rollout_id(rollout: Rollout, target: Mapping[str, int]) -> str:
    """What makes a rollout the same one: its version, where it ends and its steps (gates,
    timeouts and pausing may change on the way)."""
    document = {
        "version": rollout.version,
        "target": dict(sorted(target.items())),
        "steps": [s.to_dict() for s in rollout.steps],
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


def step_ratios(
    before: Mapping[str, int], target: Mapping[str, int], candidate: str, percent: int
) -> Ratios:
    """The candidate at `percent`, the other versions of the target sharing the rest in
    the proportions they had before (by the target's when they had none), summing to
    exactly 100 (largest remainders)."""
    others = [k for k in target if k != candidate]
    weights = {k: before.get(k, 0) for k in others}
    if not sum(weights.values()):
        weights = {k: target[k] for k in others}
    total = sum(weights.values())
    rest = 100 - percent
    if not total:
        return {k: (100 if k == candidate else 0) for k in target}
    exact = {k: rest * w / total for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    short = rest - sum(out.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - out[k]), others.index(k)))[:short]:
        out[k] += 1
    return {k: (percent if k == candidate else out[k]) for k in target}


def gate_readings(rollout: Rollout, reading: Reading, step: int = 0) -> list[GateReading]:
    gates = rollout.gates
    cand, stable = reading.candidate, reading.stable
    found = []

    def add(name: str, value: float, limit: float, least: bool = False) -> None:
        passed = value >= limit if least else value <= limit
        found.append(GateReading(gate=name, value=round(value, 3), limit=limit, passed=passed))

    shadowing = rollout.steps[step].shadow_percent is not None
    if shadowing and gates.min_agreement_percent is not None and reading.agreement:
        same, compared = reading.agreement
        if compared:
            add("minAgreementPercent", 100.0 * same / compared, gates.min_agreement_percent, True)

    if gates.max_error_rate_percent is not None:
        add("maxErrorRatePercent", cand.error_percent, gates.max_error_rate_percent)
    if gates.max_latency_ms is not None and cand.latency_ms is not None:
        add("maxLatencyMs", cand.latency_ms, gates.max_latency_ms)
    if gates.max_error_rate_increase is not None and stable.requests:
        add(
            "maxErrorRateIncrease",
            cand.error_percent - stable.error_percent,
            gates.max_error_rate_increase,
        )
    if (
        gates.max_latency_increase_percent is not None
        and cand.latency_ms is not None
        and stable.latency_ms
    ):
        add(
            "maxLatencyIncreasePercent",
            100.0 * (cand.latency_ms / stable.latency_ms - 1),
            gates.max_latency_increase_percent,
        )
    for query in gates.queries or ():
        value = reading.queries.get(query.name)
        if value is not None:  # no data yet is no reading
            add(f"query:{query.name}", value, query.max)
    return found


def _held(readings: list[GateReading]) -> str:
    """What the step that passed measured, for its Event."""
    if not readings:
        return ""
    shown = ", ".join(
        f"{r.gate} {r.value:g} {'>=' if r.gate.startswith('min') else '<='} {r.limit:g}"
        for r in readings
    )
    return f" (gates held: {shown})"


def _describe(reading: GateReading) -> str:
    sign = "<" if reading.gate.startswith("min") else ">"
    return f"{reading.gate} {reading.value:g} {sign} {reading.limit:g}"


def decide(
    rollout: Rollout | None,
    target: Mapping[str, int],
    *,
    previous: RolloutStatus | None,
    running: Mapping[str, int] | None,
    reading: Reading | None,
    now: datetime,
    candidate_ready: bool = True,
) -> Decision:
    """The next status.rollout and ratios. `target`: the spec's ratios (shadows left out);
    `running`: the ratios the router runs now (None for a service not deployed yet);
    `reading`: the router's counts over the current step (None when not read);
    `candidate_ready`: every instance of the new version is ready (no step starts before:
    requests to instances still starting would count as its errors)."""
    decision = _decide(rollout, target, previous, running, reading, now, candidate_ready)
    if decision.status is None or rollout is None:
        return decision
    status = decision.status
    shown = f"{status.version}={status.ratio_map().get(status.version, 0)}%"
    shadowing = shadow_step(rollout, status)
    if shadowing is not None:
        shown = f"{status.version} shadow {shadowing}%"
    steps = f"{status.step + 1}/{len(rollout.steps)}"
    summary = {
        "Succeeded": f"Succeeded {shown}",
        "RolledBack": f"RolledBack at {steps}",
        "Failed": f"Failed at {steps}",
    }.get(status.phase, f"{status.phase} {steps} {shown}")
    return replace(decision, status=status.model_copy(update={"summary": summary}))


def _decide(  # noqa: PLR0917 - the inputs of one decision, named at the one call
    rollout: Rollout | None,
    target: Mapping[str, int],
    previous: RolloutStatus | None,
    running: Mapping[str, int] | None,
    reading: Reading | None,
    now: datetime,
    candidate_ready: bool,
) -> Decision:
    target = dict(target)
    if rollout is None or rollout.version not in target:
        return Decision(None, target)
    rid = rollout_id(rollout, target)
    if previous is not None and previous.id == rid and previous.phase == "Pending":
        running = previous.from_map()  # what ran when the rollout appeared
        previous = None
    if previous is None or previous.id != rid:
        if not candidate_ready and running and sum(running.values()) == 100:
            return _pending(rollout, rid, target, running, now)
        return _start(rollout, rid, target, running, now)
    if previous.phase == "Succeeded":
        return Decision(previous, target)
    if previous.phase in ("RolledBack", "Failed"):
        return Decision(previous, previous.from_map())
    return _active(rollout, target, previous, reading, now)


def _start(
    rollout: Rollout,
    rid: str,
    target: Ratios,
    running: Mapping[str, int] | None,
    now: datetime,
) -> Decision:
    before = {k: running.get(k, 0) for k in target} if running else dict(target)
    stamp = rfc3339(now)
    if not running or before == target or sum(before.values()) != 100:
        status = RolloutStatus(
            id=rid,
            version=rollout.version,
            phase="Succeeded",
            step=len(rollout.steps) - 1,
            started=stamp,
            step_started=stamp,
            from_ratios=as_list(before),
            ratios=as_list(target),
            message="nothing to roll out: the service runs the target ratios",
        )
        return Decision(status, target)
    ratios = _ratios_at(rollout, 0, before, target)
    status = RolloutStatus(
        id=rid,
        version=rollout.version,
        phase="Paused" if rollout.paused else "Progressing",
        step=0,
        started=stamp,
        step_started=stamp,
        from_ratios=as_list(before),
        ratios=as_list(ratios),
        message=f"step 1 of {len(rollout.steps)}: {_share(rollout, 0, ratios)}",
    )
    event = Event("Normal", "RolloutStarted", f"{rollout.version}: {status.message}")
    return Decision(status, ratios, event, None if rollout.paused else _first_look(rollout, 0))


def _share(rollout: Rollout, step: int, ratios: Mapping[str, int]) -> str:
    shadow = rollout.steps[step].shadow_percent
    if shadow is not None:
        return f"{rollout.version} as a shadow of {shadow}% of the requests"
    return f"{rollout.version} at {ratios.get(rollout.version, 0)}%"


def shadow_step(rollout: Rollout | None, status: RolloutStatus | None) -> int | None:
    """The shadow percent of the current step, when it is a shadow step under way."""
    if rollout is None or status is None or not is_active(status):
        return None
    if status.step >= len(rollout.steps):
        return None
    return rollout.steps[status.step].shadow_percent


def _pending(
    rollout: Rollout, rid: str, target: Ratios, running: Mapping[str, int], now: datetime
) -> Decision:
    """A rollout whose version is not ready yet: the ratios that run stay."""
    before = {k: running.get(k, 0) for k in target}
    stamp = rfc3339(now)
    status = RolloutStatus(
        id=rid,
        version=rollout.version,
        phase="Pending",
        step=0,
        started=stamp,
        step_started=stamp,
        from_ratios=as_list(before),
        ratios=as_list(before),
        message=f"waiting for every instance of {rollout.version} to be ready before step 1",
    )
    return Decision(status, before, None, POLL_SECONDS)


def _ratios_at(rollout: Rollout, step: int, before: Mapping[str, int], target: Ratios) -> Ratios:
    if step == len(rollout.steps) - 1:
        return dict(target)
    return step_ratios(before, target, rollout.version, rollout.steps[step].percent)


def _first_look(rollout: Rollout, step: int) -> float:
    return float(min(POLL_SECONDS, max(rollout.steps[step].bake_seconds, 1)))


def _active(
    rollout: Rollout,
    target: Ratios,
    previous: RolloutStatus,
    reading: Reading | None,
    now: datetime,
) -> Decision:
    ratios = previous.ratio_map()
    step = previous.step
    if rollout.paused:
        paused = previous.model_copy(
            update={"phase": "Paused", "message": f"paused at step {step + 1}"}
        )
        event = None
        if previous.phase != "Paused":
            event = Event("Normal", "RolloutPaused", f"{rollout.version}: {paused.message}")
        return Decision(paused, ratios, event)
    if previous.phase == "Paused":  # resumed: the step's bake starts again
        previous = previous.model_copy(
            update={"phase": "Progressing", "step_started": rfc3339(now)}
        )
    elapsed = (now - parse_time(previous.step_started)).total_seconds()
    spec_step = rollout.steps[step]
    counted = reading.candidate.requests if reading is not None else 0
    enough = counted >= rollout.gates.min_requests
    readings = gate_readings(rollout, reading, step) if reading is not None and enough else []
    breached = [r for r in readings if not r.passed]
    if breached:
        return _roll_back(
            rollout, previous, readings, "RolledBack", ", ".join(map(_describe, breached))
        )
    if elapsed < spec_step.bake_seconds or not enough:
        if not enough and elapsed >= rollout.step_timeout_seconds:
            why = (
                f"step {step + 1} gathered {counted} of {rollout.gates.min_requests} requests "
                f"in stepTimeoutSeconds ({rollout.step_timeout_seconds})"
            )
            return _roll_back(rollout, previous, readings, "Failed", why)
        phase = "Progressing" if enough or elapsed < spec_step.bake_seconds else "Waiting"
        message = (
            f"step {step + 1} of {len(rollout.steps)}: {_share(rollout, step, ratios)}, "
            f"{counted} requests"
        )
        if phase == "Waiting":
            message += f", waiting for {rollout.gates.min_requests}"
        status = previous.model_copy(update={"phase": phase, "gates": readings, "message": message})
        remaining = max(spec_step.bake_seconds - elapsed, 0.0)
        return Decision(status, ratios, None, min(POLL_SECONDS, remaining) or POLL_SECONDS)
    if step == len(rollout.steps) - 1:
        status = previous.model_copy(
            update={
                "phase": "Succeeded",
                "ratios": as_list(target),
                "gates": readings,
                "message": f"{rollout.version} rolled out: {_show(target)}",
            }
        )
        said = status.message + _held(readings)
        return Decision(status, dict(target), Event("Normal", "RolloutSucceeded", said))
    nxt = step + 1
    ratios = _ratios_at(rollout, nxt, previous.from_map(), target)
    status = previous.model_copy(
        update={
            "phase": "Progressing",
            "step": nxt,
            "step_started": rfc3339(now),
            "ratios": as_list(ratios),
            "gates": readings,
            "message": f"step {nxt + 1} of {len(rollout.steps)}: {_share(rollout, nxt, ratios)}",
        }
    )
    said = f"{rollout.version}: {status.message}{_held(readings)}"
    event = Event("Normal", "RolloutStepped", said)
    return Decision(status, ratios, event, _first_look(rollout, nxt))


def _roll_back(
    rollout: Rollout,
    previous: RolloutStatus,
    readings: list[GateReading],
    phase: str,
    why: str,
) -> Decision:
    before = previous.from_map()
    message = (
        f"rolled back at step {previous.step + 1} of {len(rollout.steps)}: {why}; "
        f"traffic back to {_show(before)} until the spec changes"
    )
    status = previous.model_copy(
        update={"phase": phase, "ratios": as_list(before), "gates": readings, "message": message}
    )
    reason = "RolloutRolledBack" if phase == "RolledBack" else "RolloutFailed"
    return Decision(status, before, Event("Warning", reason, f"{rollout.version}: {message}"))


def _show(ratios: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in ratios.items())


def is_active(status: RolloutStatus | None) -> bool:
    return status is not None and status.phase in ACTIVE_PHASES
