"""Warnings for legal but risky specs: returned to `kubectl` by the webhook, not refusals."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

SECRET_NAME = re.compile(
    r"(pass(word|wd)?|secret|token|api[-_]?key|access[-_]?key|private[-_]?key|credential)",
    re.IGNORECASE,
)


def _env_lists(obj: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return
    if obj.get("kind") == "BatchService":
        yield "spec.env", spec.get("env")
    for i, version in enumerate(spec.get("versions") or []):
        if isinstance(version, Mapping):
            yield f"spec.versions[{i}].env", version.get("env")


def warnings_for(obj: Mapping[str, Any]) -> list[str]:
    """One warning per plain env value whose name looks like a credential."""
    found = []
    for path, env in _env_lists(obj):
        for j, var in enumerate(env if isinstance(env, list) else []):
            if not isinstance(var, Mapping):
                continue
            name = var.get("name")
            if isinstance(name, str) and "value" in var and SECRET_NAME.search(name):
                found.append(
                    f"{path}[{j}]: {name} has a plain value; pass credentials with "
                    "valueFrom.secretKeyRef so they stay out of the spec"
                )
    return found
