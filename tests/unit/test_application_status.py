"""AIApplication status: verdicts per version, summary, Ready condition (pure functions)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from inferops.reconcile.application import application_status as application_status_model
from inferops.reconcile.common import status_fields
from inferops.reconcile.conditions import condition, set_condition
from tests.unit.rules_table import app


def application_status(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """The status as the operator patches it."""
    return status_fields(application_status_model(*args, **kwargs))


T0, T1 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"


def spec_with(change: Any = None) -> dict[str, Any]:
    spec = copy.deepcopy(app()["spec"])
    if change:
        change(spec)
    return spec


def file_input(spec: dict[str, Any]) -> None:
    spec["versions"][1]["apis"][0]["request"] = {
        "Content-type": "multipart/form-data",
        "data": {"type": "object", "properties": {"images": {"type": "file"}}},
    }


@pytest.mark.parametrize(
    ("change", "phases", "input_types", "ready", "reason", "fragment"),
    [
        (None, ["Normal", "Normal"], ["json", "json"], "True", "AllVersionsNormal", "2 version"),
        (file_input, ["Normal", "Normal"], ["json", "file"], "True", "AllVersionsNormal", ""),
        (
            lambda s: s["versions"][1].update(apis=[]),
            ["Normal", "Invalid"],
            ["json", None],
            "False",
            "InvalidVersions",
            "2.0.0: spec.versions[1].apis: at least one API",
        ),
        (
            lambda s: s["versions"][0]["apis"][0]["request"]["data"].update(type="tensor"),
            ["Invalid", "Normal"],
            [None, "json"],
            "False",
            "InvalidVersions",
            "unknown type 'tensor'",
        ),
        (
            lambda s: s["versions"][0]["apis"].append(s["versions"][0]["apis"][0]),
            ["Invalid", "Normal"],
            [None, "json"],
            "False",
            "InvalidVersions",
            "declared twice",
        ),
    ],
)
def test_status_table(
    change: Any,
    phases: list[str],
    input_types: list[str | None],
    ready: str,
    reason: str,
    fragment: str,
) -> None:
    status = application_status(spec_with(change), 3, None, T0)
    assert [v["phase"] for v in status["versions"]] == phases
    assert [v.get("inputType") for v in status["versions"]] == input_types
    assert status["observedGeneration"] == 3
    assert status["summary"] == f"{phases.count('Normal')}/{len(phases)}"
    ready_condition = condition(status["conditions"], "Ready")
    assert ready_condition["status"] == ready
    assert ready_condition["reason"] == reason
    assert ready_condition["observedGeneration"] == 3
    assert fragment in ready_condition["message"]


def test_malformed_spec_is_reported_not_raised() -> None:
    status = application_status({"versions": "nope"}, 1, None, T0)
    assert status["versions"] == []
    ready_condition = condition(status["conditions"], "Ready")
    assert ready_condition["reason"] == "InvalidSpec"
    assert "spec.versions" in ready_condition["message"]


def test_transition_time_moves_only_when_status_changes() -> None:
    first = set_condition(None, "Ready", True, reason="A", message="", generation=1, timestamp=T0)
    same = set_condition(first, "Ready", True, reason="B", message="m", generation=2, timestamp=T1)
    assert same[0]["lastTransitionTime"] == T0 and same[0]["observedGeneration"] == 2
    flipped = set_condition(
        same, "Ready", False, reason="C", message="", generation=3, timestamp=T1
    )
    assert flipped[0]["lastTransitionTime"] == T1 and flipped[0]["status"] == "False"
    other = set_condition(
        flipped, "Progressing", None, reason="D", message="", generation=3, timestamp=T1
    )
    assert [c["type"] for c in other] == ["Ready", "Progressing"]
    assert other[1]["status"] == "Unknown"
