"""Validation of one object of any Inferops kind: the entry point for CLI, webhook, handlers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ValidationError

from inferops.api.application import AIApplicationSpec
from inferops.api.batch import BatchServiceSpec
from inferops.api.catalog import Catalog, default_catalog
from inferops.api.kinds import ALL_KINDS, KindInfo
from inferops.api.names import API_VERSION, DNS1035_LABEL, DNS1123_LABEL
from inferops.api.realtime import RealTimeServiceSpec
from inferops.validation.application_rules import check_version
from inferops.validation.batch_paths import batch_path_rules
from inferops.validation.catalog_rules import batch_catalog_rules, realtime_catalog_rules
from inferops.validation.problems import Problem, from_validation_error
from inferops.validation.references import (
    ApplicationIndex,
    batch_reference_rules,
    namespace_of,
    realtime_reference_rules,
)
from inferops.validation.secrets import SecretStates, secret_references, secret_rules
from inferops.validation.spec_rules import (
    application_rules,
    batch_rules,
    realtime_rules,
    realtime_transition_rules,
)
from inferops.validation.storage_rules import (
    batch_storage_rules,
    realtime_storage_rules,
)

Finding = tuple[str, str]


@dataclass(frozen=True)
class ValidationContext:
    """What validation may consult besides the object itself.

    applications None skips the reference rules (the app is not known here); `old` is the
    stored object on update, for transition rules. `disclose` False keeps messages to the
    object's own fields and yes/no facts about what it names (no versions, URLs, reasons
    or quota usage of other objects): the webhook's answer to a caller it cannot
    authenticate, who may have forged a review naming another tenant's namespace.
    `secrets`, what the cluster says about the Secrets the object names (secrets.py);
    None skips the Secret rule. On update `old` also ratchets (see `validate_object`).
    """

    catalog: Catalog = field(default_factory=default_catalog)
    applications: ApplicationIndex | None = None
    old: Mapping[str, Any] | None = None
    disclose: bool = True
    secrets: SecretStates | None = None


def identify(obj: Any) -> tuple[str, str]:
    """(kind, name) for messages, with placeholders when missing."""
    if not isinstance(obj, Mapping):
        return "?", "?"
    kind = obj.get("kind")
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return (
        kind if isinstance(kind, str) and kind else "?",
        name if isinstance(name, str) and name else "?",
    )


def _name_findings(info: KindInfo, obj: Mapping[str, Any]) -> Iterable[Finding]:
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        yield "metadata", "required field is missing"
        return
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        yield "metadata.name", "required field is missing"
        return
    pattern = DNS1035_LABEL if info.dns1035_name else DNS1123_LABEL
    label = "DNS-1035 label" if info.dns1035_name else "DNS-1123 label"
    if len(name) > info.max_name_length or not re.match(pattern, name):
        yield (
            "metadata.name",
            (f"metadata.name must be a {label} of at most {info.max_name_length} characters"),
        )


def _parse(model: type[BaseModel], value: Any) -> tuple[Any, ValidationError | None]:
    try:
        return model.model_validate(value), None
    except ValidationError as exc:
        return None, exc


def _spec_findings(
    info: KindInfo, obj: Mapping[str, Any], spec: Any, ctx: ValidationContext
) -> Iterable[Finding]:
    namespace = namespace_of(obj)
    if isinstance(spec, RealTimeServiceSpec):
        yield from realtime_rules(spec)
        old_spec = _old_spec(info, ctx)
        if isinstance(old_spec, RealTimeServiceSpec):
            yield from realtime_transition_rules(spec, old_spec)
        yield from realtime_storage_rules(spec)
        yield from realtime_catalog_rules(spec, ctx.catalog)
        if ctx.applications is not None:
            yield from realtime_reference_rules(
                spec, namespace, ctx.applications, disclose=ctx.disclose
            )
    elif isinstance(spec, BatchServiceSpec):
        yield from batch_rules(spec)
        yield from batch_storage_rules(spec)
        yield from batch_path_rules(spec)
        yield from batch_catalog_rules(spec, ctx.catalog)
        if ctx.applications is not None:
            yield from batch_reference_rules(
                spec, namespace, ctx.applications, disclose=ctx.disclose
            )
    elif isinstance(spec, AIApplicationSpec):
        yield from application_rules(spec)
        for i, version in enumerate(spec.versions):
            verdict = check_version(version, f"spec.versions[{i}]")
            if not verdict.normal:
                yield verdict.path, verdict.message.split(": ", 1)[-1]


def _old_spec(info: KindInfo, ctx: ValidationContext) -> Any:
    if ctx.old is None:
        return None
    spec, error = _parse(info.spec, ctx.old.get("spec"))
    return None if error else spec


def validate_object(obj: Any, ctx: ValidationContext | None = None) -> list[Problem]:
    """Every problem with one object. Never raises: anything malformed is a problem.

    On update (`ctx.old` given) a problem the stored object has as well is not one of this
    update's: the catalog lost a flavor, an application or a Secret changed, or a rule got
    stricter since the object was admitted. Refusing it would refuse every later update,
    even Kopf's own annotations, an Argo CD label or `stopped: true`; so, like Kubernetes'
    validation ratcheting, only problems the update brings are returned (`ratcheted` gives
    the others, for warnings).
    """
    ctx = ctx or ValidationContext()
    problems = _problems(obj, ctx)
    if ctx.old is None or not problems:
        return problems
    before = set(_problems(ctx.old, replace(ctx, old=None)))
    return [p for p in problems if p not in before]


def ratcheted(obj: Any, ctx: ValidationContext) -> list[Problem]:
    """The problems an update keeps from the stored object (accepted, with a warning)."""
    if ctx.old is None:
        return []
    before = set(_problems(ctx.old, replace(ctx, old=None)))
    return [p for p in _problems(obj, ctx) if p in before]


def catalog_problems(obj: Any, catalog: Catalog) -> list[Problem]:
    """The problems the catalog rules alone find: the ones a catalog change can bring to
    a spec nobody edited."""
    kind, name = identify(obj)
    info = ALL_KINDS.get(kind)
    if info is None or not isinstance(obj, Mapping):
        return []
    spec, _ = _parse(info.spec, obj.get("spec"))
    if isinstance(spec, RealTimeServiceSpec):
        found = list(realtime_catalog_rules(spec, catalog))
    elif isinstance(spec, BatchServiceSpec):
        found = list(batch_catalog_rules(spec, catalog))
    else:
        found = []
    return [Problem(kind, name, p, m) for p, m in found]


def _problems(obj: Any, ctx: ValidationContext) -> list[Problem]:
    kind, name = identify(obj)
    if not isinstance(obj, Mapping):
        return [Problem(kind, name, "(document)", "expected a mapping with apiVersion and kind")]
    info = ALL_KINDS.get(kind)
    if info is None:
        return [Problem(kind, name, "kind", f"unknown kind; expected one of {sorted(ALL_KINDS)}")]
    problems = []
    if obj.get("apiVersion") != API_VERSION:
        problems.append(Problem(kind, name, "apiVersion", f"must be {API_VERSION}"))
    problems += [Problem(kind, name, p, m) for p, m in _name_findings(info, obj)]
    if "spec" not in obj:
        return [*problems, Problem(kind, name, "spec", "required field is missing")]
    spec, error = _parse(info.spec, obj["spec"])
    if error is not None:
        return [*problems, *from_validation_error(kind, name, ["spec"], error)]
    problems += [Problem(kind, name, p, m) for p, m in _spec_findings(info, obj, spec, ctx)]
    if ctx.secrets is not None:
        refs = secret_references(obj, ctx.applications)
        found = secret_rules(refs, ctx.secrets, disclose=ctx.disclose)
        problems += [Problem(kind, name, p, m) for p, m in found]
    return problems
