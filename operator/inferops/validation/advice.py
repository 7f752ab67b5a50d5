"""Warnings for legal but risky specs: returned to `kubectl` by the webhook, not refusals."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from inferops.validation.document import ValidationContext, ratcheted

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


def warnings_for(obj: Mapping[str, Any], ctx: ValidationContext | None = None) -> list[str]:
    """One warning per plain env value whose name looks like a credential, and, on update,
    one per problem the stored object already had (accepted: see `validate_object`)."""
    found = [
        f"{p.path}: {p.message} (so it was before this update, which is accepted; the "
        "operator applies the spec again once this is fixed)"
        for p in (ratcheted(obj, ctx) if ctx is not None else [])
    ]
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
