"""The status of an AIApplication: a verdict per version, a summary and a Ready condition."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from inferops.api.application import AIApplicationSpec
from inferops.reconcile.conditions import set_condition
from inferops.validation.application_rules import VersionVerdict, check_version
from inferops.validation.problems import from_validation_error


def verdicts(spec: Any) -> tuple[list[VersionVerdict], str]:
    """Per-version verdicts, or ([], message) when the spec itself is malformed."""
    try:
        parsed = AIApplicationSpec.model_validate(spec)
    except ValidationError as exc:
        problems = from_validation_error("AIApplication", "", ["spec"], exc)
        return [], "; ".join(f"{p.path}: {p.message}" for p in problems[:5])
    return [check_version(v, f"spec.versions[{i}]") for i, v in enumerate(parsed.versions)], ""


def application_status(
    spec: Any,
    generation: int | None,
    status: Mapping[str, Any] | None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """The whole status subresource of an AIApplication, from its spec."""
    found, spec_problem = verdicts(spec)
    normal = sum(v.normal for v in found)
    if spec_problem:
        ready, reason, message = False, "InvalidSpec", spec_problem
    elif normal == len(found):
        ready, reason, message = True, "AllVersionsNormal", f"{normal} version(s) Normal"
    else:
        bad = [f"{v.version}: {v.message}" for v in found if not v.normal]
        ready, reason, message = False, "InvalidVersions", "; ".join(bad)
    conditions = set_condition(
        (status or {}).get("conditions"),
        "Ready",
        ready,
        reason=reason,
        message=message,
        generation=generation,
        timestamp=timestamp,
    )
    return {
        "observedGeneration": generation,
        "versions": [
            {
                "version": v.version,
                "phase": v.phase,
                "message": v.message,
                **({"inputType": v.input_type} if v.input_type else {}),
            }
            for v in found
        ],
        "summary": f"{normal}/{len(found)}",
        "conditions": conditions,
    }


def version_phases(status: Mapping[str, Any] | None) -> dict[str, str]:
    """version -> phase as last reported (for events on transitions)."""
    versions = (status or {}).get("versions") or []
    return {str(v.get("version")): str(v.get("phase")) for v in versions if isinstance(v, Mapping)}
