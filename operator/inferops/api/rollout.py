"""spec.rollout of a RealTimeService: how a version is introduced, step by step, behind
metric gates (issue 17). The spec says where the rollout ends (the versions' ratios);
the ratios in effect and the progress live in status.rollout, written by the operator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import ConfigDict, Field

from inferops.api.base import ApiModel, cel, rules

MAX_STEPS = 20
MSG_STEPS_INCREASE = "steps must increase: each percent above the one before"
MSG_GATE_NEEDED = "a rollout needs at least one gate (maxErrorRatePercent, maxLatencyMs, ...)"


MSG_SHADOW_STEP = (
    "a step is either a share (percent above 0) or a shadow (percent 0 and shadowPercent)"
)


class RolloutStep(ApiModel):
    """One step: the new version's share of the split, held for bakeSeconds; or, with
    percent 0 and shadowPercent, a shadow step: it answers copies only, and
    gates.minAgreementPercent compares its answers with production's."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel("(self.percent > 0) != has(self.shadowPercent)", MSG_SHADOW_STEP)
        )
    )

    percent: int = Field(ge=0, le=100, description="The new version's percent of the traffic.")
    shadow_percent: int | None = Field(
        None,
        ge=1,
        le=100,
        description="With percent 0: the share of the split requests copied to the new "
        "version, whose answers are compared with production's and discarded.",
    )
    bake_seconds: int = Field(
        300, ge=0, le=7 * 24 * 3600, description="How long the step is watched before the next."
    )


MAX_QUERIES = 8


class GateQuery(ApiModel):
    """A gate of one's own: a PromQL query to the catalog's Prometheus whose value must
    stay at or under max. `$version`, `$service`, `$namespace` and `$window` (the time
    since the step started, e.g. 95s) are filled in before it is sent."""

    name: str = Field(pattern=r"^[a-zA-Z][a-zA-Z0-9_-]{0,62}$", description="Shown in status.")
    query: str = Field(min_length=1, max_length=4096, description="PromQL, one number out.")
    max: float = Field(description="The highest value the step may see.")


class Gates(ApiModel):
    """What the new version must hold at every step, measured by the router over the step
    (split requests only: pinned ones do not count)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "has(self.maxErrorRatePercent) || has(self.maxLatencyMs) || "
                "has(self.maxErrorRateIncrease) || has(self.maxLatencyIncreasePercent) || "
                "has(self.minAgreementPercent) || (has(self.queries) && self.queries.size() > 0)",
                MSG_GATE_NEEDED,
            )
        )
    )

    max_error_rate_percent: float | None = Field(
        None, ge=0, le=100, description="Most 5xx answers, in percent of its requests."
    )
    max_latency_ms: int | None = Field(
        None, ge=1, le=3_600_000, description="Highest latency at latencyQuantile, in ms."
    )
    latency_quantile: float = Field(
        0.95, ge=0.5, le=0.999, description="The quantile maxLatencyMs applies to."
    )
    max_error_rate_increase: float | None = Field(
        None,
        ge=0,
        le=100,
        description="Most percentage points of 5xx above the stable versions' over the step.",
    )
    max_latency_increase_percent: float | None = Field(
        None,
        ge=0,
        le=10_000,
        description="Most percent of latency above the stable versions' at the quantile.",
    )
    min_agreement_percent: float | None = Field(
        None,
        ge=0,
        le=100,
        description="Shadow steps: the least share of copies whose status and body equal "
        "production's answer.",
    )
    queries: list[GateQuery] | None = Field(
        None,
        max_length=MAX_QUERIES,
        description="Gates of one's own, queried from the catalog's Prometheus.",
    )
    min_requests: int = Field(
        100,
        ge=0,
        le=100_000_000,
        description="Requests the new version must have answered in a step before the step "
        "may pass; a step waits for them up to stepTimeoutSeconds.",
    )

    def any_gate(self) -> bool:
        return any(
            v is not None
            for v in (
                self.max_error_rate_percent,
                self.max_latency_ms,
                self.max_error_rate_increase,
                self.max_latency_increase_percent,
                self.min_agreement_percent,
            )
        ) or bool(self.queries)


class Rollout(ApiModel):
    """Introduce one version by steps; roll back to the ratios before it at a gate breach."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.steps.all(a, self.steps.filter(b, b.percent == a.percent).size() == 1) "
                "&& self.steps.map(s, s.percent).isSorted()",
                MSG_STEPS_INCREASE,
                field_path=".steps",
            ),
        )
    )

    version: str = Field(
        description="The version introduced, as <application>:<version>; one of the service's "
        "versions, whose trafficRatio is where the rollout ends.",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?:[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
        max_length=200,
    )
    steps: list[RolloutStep] = Field(
        min_length=1,
        max_length=MAX_STEPS,
        description="Increasing percents, the last one the version's trafficRatio.",
    )
    gates: Gates = Field(description="What every step must hold.")
    step_timeout_seconds: int = Field(
        3600,
        ge=60,
        le=7 * 24 * 3600,
        description="How long a step may wait for gates.minRequests before the rollout fails "
        "(and rolls back).",
    )
    paused: bool = Field(False, description="Hold the current step (its bake restarts on resume).")


RolloutPhase = Literal[
    "Pending", "Progressing", "Waiting", "Paused", "Succeeded", "RolledBack", "Failed"
]
ACTIVE_PHASES = frozenset({"Pending", "Progressing", "Waiting", "Paused"})


class GateReading(ApiModel):
    """One gate as last measured."""

    gate: str = Field(description="The gate's field, e.g. maxErrorRatePercent.")
    value: float = Field(description="What was measured over the step.")
    limit: float = Field(description="The gate's limit.")
    passed: bool = Field(description="value within limit.")


class VersionRatio(ApiModel):
    """A version's percent of the split (a list item: a merge patch replaces the list
    whole, where it would merge a map's keys)."""

    version: str = Field(description="<application>:<version>.")
    percent: int = Field(description="Its percent of the split.")


def as_list(ratios: Mapping[str, int]) -> list[VersionRatio]:
    return [VersionRatio(version=k, percent=v) for k, v in ratios.items()]


class RolloutStatus(ApiModel):
    """Where a rollout stands: written by the operator, read back after a restart."""

    id: str = Field(description="Identity of the rollout (version, target ratios, steps).")
    version: str = Field(description="The version being introduced.")
    phase: RolloutPhase = Field(description="Progressing, Waiting, Paused, Succeeded, ...")
    step: int = Field(description="Index of the current step (0-based).")
    started: str = Field(description="When the rollout started (RFC 3339).")
    step_started: str = Field(description="When the current step started (RFC 3339).")
    from_ratios: list[VersionRatio] = Field(description="The ratios before the rollout.")
    ratios: list[VersionRatio] = Field(description="The ratios in effect.")
    gates: list[GateReading] = Field(default_factory=list, description="Last readings.")
    message: str = Field("", description="What happened last, in words.")
    summary: str = Field("", description="For kubectl get, e.g. Progressing 2/3 iris:2.0.0=25%.")

    def from_map(self) -> dict[str, int]:
        return {r.version: r.percent for r in self.from_ratios}

    def ratio_map(self) -> dict[str, int]:
        return {r.version: r.percent for r in self.ratios}
