"""AIApplication: check every version and report Normal or Invalid."""

from __future__ import annotations

from typing import Any

import kopf

from inferops.api.kinds import APPLICATION
from inferops.api.names import GROUP, VERSION
from inferops.reconcile.application import application_status, version_phases

RESOURCE = (GROUP, VERSION, APPLICATION.plural)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
def check_application(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    **_: Any,
) -> None:
    before = version_phases(status)
    new = application_status(dict(spec), meta.get("generation"), dict(status))
    patch.status.update(new)
    for version in new["versions"]:
        if before.get(version["version"]) == version["phase"]:
            continue
        if version["phase"] == "Normal":
            kopf.info(
                body, reason="VersionNormal", message=f"version {version['version']} is Normal"
            )
        else:
            kopf.warn(
                body,
                reason="VersionInvalid",
                message=f"version {version['version']} is Invalid: {version['message']}",
            )
