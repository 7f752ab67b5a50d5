"""The status of an AIApplication: a verdict per version, a summary and a Ready condition,
written through `Kube` like every other status, with an event per version that changed."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from inferops.api import phases
from inferops.api.application import AIApplicationSpec, AIApplicationStatus, AppVersionStatus
from inferops.api.names import API_VERSION, KIND_APPLICATION
from inferops.reconcile.common import Event, Outcome, now, write_status
from inferops.reconcile.conditions import format_time, set_condition
from inferops.reconcile.kube import Cluster
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
) -> AIApplicationStatus:
    """The whole status subresource of an AIApplication, from its spec."""
    found, spec_problem = verdicts(spec)
    normal = sum(v.normal for v in found)
    if spec_problem:
        ready, reason, message = False, phases.INVALID_SPEC, spec_problem
    elif normal == len(found):
        ready, reason, message = True, phases.ALL_VERSIONS_NORMAL, f"{normal} version(s) Normal"
    else:
        bad = [f"{v.version}: {v.message}" for v in found if not v.normal]
        ready, reason, message = False, phases.INVALID_VERSIONS, "; ".join(bad)
    conditions = set_condition(
        (status or {}).get("conditions"),
        phases.READY,
        ready,
        reason=reason,
        message=message,
        generation=generation,
        timestamp=timestamp,
    )
    return AIApplicationStatus.model_validate(
        {
            "observedGeneration": generation,
            "versions": [
                AppVersionStatus(
                    version=v.version, phase=v.phase, input_type=v.input_type, message=v.message
                )
                for v in found
            ],
            "summary": f"{normal}/{len(found)}",
            "conditions": conditions,
        }
    )


def version_phases(status: Mapping[str, Any] | None) -> dict[str, str]:
    """version -> phase as last reported (for events on transitions)."""
    versions = (status or {}).get("versions") or []
    return {str(v.get("version")): str(v.get("phase")) for v in versions if isinstance(v, Mapping)}


def version_events(before: Mapping[str, str], status: AIApplicationStatus) -> tuple[Event, ...]:
    """An event for each version whose verdict is new or changed."""
    found = []
    for version in status.versions:
        if before.get(version.version) == version.phase:
            continue
        if version.phase == phases.NORMAL:
            found.append(Event("VersionNormal", f"version {version.version} is Normal"))
        else:
            text = f"version {version.version} is Invalid: {version.message}"
            found.append(Event("VersionInvalid", text, warning=True))
    return tuple(found)


def reconcile_application(
    kube: Cluster, namespace: str, name: str, moment: datetime.datetime | None = None
) -> Outcome | None:
    """Checks every version and writes the status; None when the object is gone."""
    obj = kube.get(API_VERSION, KIND_APPLICATION, namespace, name)
    if obj is None:
        return None
    old = obj.get("status") or {}
    timestamp = format_time(moment or now())
    status = application_status(obj.get("spec"), obj["metadata"].get("generation"), old, timestamp)
    written = write_status(kube, obj, status)
    notes = version_events(version_phases(old), status)
    return Outcome(obj, written.old_phase, written.phase, written.message, notes=notes)
