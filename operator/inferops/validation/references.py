"""Rules across objects: the application and version a service names, and what they offer."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from inferops.api.application import AIApplicationSpec, ApiDefinition, AppVersion
from inferops.api.batch import BatchServiceSpec
from inferops.api.names import KIND_APPLICATION
from inferops.api.realtime import RealTimeServiceSpec
from inferops.contract.request_schema import (
    is_websocket_api,
    mapped_columns,
    request_schema,
    schema_problems,
)
from inferops.validation.application_rules import VersionVerdict, check_version

Finding = tuple[str, str]


@dataclass(frozen=True)
class KnownVersion:
    spec: AppVersion
    verdict: VersionVerdict


@dataclass(frozen=True)
class KnownApplication:
    """An AIApplication as services see it: its versions and whether each is Normal."""

    name: str
    versions: Mapping[str, KnownVersion]


ApplicationIndex = Mapping[tuple[str, str], KnownApplication]
DEFAULT_NAMESPACE = "default"


def known_application(obj: Mapping[str, Any]) -> KnownApplication | None:
    """Reads an AIApplication object; None when its spec cannot be parsed at all."""
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str):
        return None
    try:
        spec = AIApplicationSpec.model_validate(obj.get("spec"))
    except ValidationError:
        return None
    versions = {
        v.version: KnownVersion(v, check_version(v, f"spec.versions[{i}]"))
        for i, v in enumerate(spec.versions)
    }
    return KnownApplication(name, versions)


def index_applications(
    objects: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str], KnownApplication]:
    """(namespace, name) -> the application, for AIApplication objects among `objects`."""
    index = {}
    for obj in objects:
        if obj.get("kind", KIND_APPLICATION) == KIND_APPLICATION:
            app = known_application(obj)
            if app is not None:
                index[(namespace_of(obj), app.name)] = app
    return index


def version_specs(apps: ApplicationIndex, namespace: str) -> dict[tuple[str, str], AppVersion]:
    """(application, version) -> spec, for every version of the namespace's applications."""
    return {
        (app.name, version): known.spec
        for (ns, _), app in apps.items()
        if ns == namespace
        for version, known in app.versions.items()
    }


def namespace_of(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    return namespace if isinstance(namespace, str) and namespace else DEFAULT_NAMESPACE


def _resolve(
    apps: ApplicationIndex,
    namespace: str,
    application: str,
    version: str,
    path: str,
    *,
    disclose: bool = True,
) -> tuple[KnownVersion | None, Finding | None]:
    app = apps.get((namespace, application))
    if app is None:
        return None, (
            f"{path}.application",
            f"application {application!r} not found in namespace {namespace!r}",
        )
    known = app.versions.get(version)
    if known is None:
        names = f" (has: {', '.join(app.versions) or 'none'})" if disclose else ""
        return None, (
            f"{path}.version",
            f"application {application!r} has no version {version!r}{names}",
        )
    if not known.verdict.normal:
        why = f"({known.verdict.message})" if disclose else "(see the application's status)"
        return None, (
            f"{path}.version",
            f"version {version!r} of application {application!r} is Invalid {why}",
        )
    return known, None


def realtime_reference_rules(
    spec: RealTimeServiceSpec, namespace: str, apps: ApplicationIndex, disclose: bool = True
) -> Iterator[Finding]:
    for i, entry in enumerate(spec.versions):
        known, problem = _resolve(
            apps,
            namespace,
            entry.application,
            entry.version,
            f"spec.versions[{i}]",
            disclose=disclose,
        )
        if problem is not None:
            yield problem
        elif known is not None and entry.shadow is not None:
            yield from _shadow_repeats_nothing(
                known, entry.version, entry.application, f"spec.versions[{i}].shadow", "a shadow"
            )
        if known is not None and _shadow_step_of(spec, entry.application, entry.version):
            yield from _shadow_repeats_nothing(
                known, entry.version, entry.application, "spec.rollout.steps", "a shadow step"
            )
        if known is not None and spec.websocket and not known.spec.websocket:
            yield (
                "spec.websocket",
                (
                    f"version {entry.version!r} of application "
                    f"{entry.application!r} does not speak WebSocket"
                ),
            )


def _shadow_step_of(spec: RealTimeServiceSpec, application: str, version: str) -> bool:
    rollout = spec.rollout
    return (
        rollout is not None
        and rollout.version == f"{application}:{version}"
        and any(s.shadow_percent is not None for s in rollout.steps)
    )


def _shadow_repeats_nothing(
    known: KnownVersion, version: str, application: str, path: str, what: str
) -> Iterator[Finding]:
    """A shadow receives copies of production's requests: one that writes or charges would
    do it a second time."""
    for j, api in enumerate(known.spec.apis):
        if not api.idempotent:
            yield (
                path,
                f"version {version!r} of application {application!r} marks API "
                f"{api.method.upper()} {api.url} as not idempotent (apis[{j}].idempotent: false); "
                f"{what} would repeat its effects",
            )


def batch_reference_rules(
    spec: BatchServiceSpec, namespace: str, apps: ApplicationIndex, disclose: bool = True
) -> Iterator[Finding]:
    known, problem = _resolve(
        apps, namespace, spec.application, spec.version, "spec", disclose=disclose
    )
    if problem is not None:
        yield problem
        return
    assert known is not None
    urls = [api.url for api in known.spec.apis]
    if spec.request_path is not None and spec.request_path not in urls:
        listed = f": {', '.join(urls)}" if disclose else ""
        yield (
            "spec.requestPath",
            f"{spec.request_path!r} is not one of the app's API urls{listed}",
        )
    else:
        api = _batch_api(known, spec.request_path)
        if is_websocket_api(api.model_dump(by_alias=True)):
            first = f"the app's first API {api.url!r}" if disclose else "the app's first API"
            which = repr(api.url) if spec.request_path else first
            yield (
                "spec.requestPath",
                f"{which} is a WebSocket API; batch services call HTTP APIs "
                "(name one in requestPath)",
            )
    if spec.mapping is not None and known.verdict.input_type == "json":
        findings = schema_problems(spec.mapping, "spec.mapping")
        yield from findings
        if not findings and not mapped_columns(spec.mapping):
            yield "spec.mapping", "no leaf has a valid index, so every request would be empty"


def _batch_api(known: KnownVersion, request_path: str | None) -> ApiDefinition:
    """The API a batch service calls: the first with its requestPath, else the first one."""
    return next((a for a in known.spec.apis if a.url == request_path), known.spec.apis[0])


def request_api_schema(known: KnownVersion, request_path: str | None) -> dict[str, Any]:
    """The request schema of the API a batch service calls."""
    return request_schema(_batch_api(known, request_path).model_dump(by_alias=True))
