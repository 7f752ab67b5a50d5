"""Whether an application version is usable (Normal) or not (Invalid), and its input type."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from inferops.api import phases
from inferops.api.application import AppVersion
from inferops.contract.request_schema import (
    InputType,
    input_type,
    is_websocket_api,
    request_schema,
    schema_problems,
    websocket_api_problem,
)
from inferops.validation.storage_rules import MSG_MODEL_URI_CREDENTIALS, has_userinfo


@dataclass(frozen=True)
class VersionVerdict:
    """The operator's verdict on one version: Normal with an input type, or Invalid."""

    version: str
    normal: bool
    input_type: InputType | None
    message: str
    path: str = ""

    @property
    def phase(self) -> Literal["Normal", "Invalid"]:
        return phases.NORMAL if self.normal else phases.INVALID


def check_version(version: AppVersion, path: str) -> VersionVerdict:
    """Checks the APIs of one version; `path` is where the version sits in the object."""

    def invalid(where: str, message: str) -> VersionVerdict:
        return VersionVerdict(version.version, False, None, f"{where}: {message}", where)

    if version.model_uri and has_userinfo(version.model_uri):
        return invalid(f"{path}.modelUri", MSG_MODEL_URI_CREDENTIALS)
    if not version.apis:
        return invalid(f"{path}.apis", "at least one API is required (the config.json apis)")
    keys = Counter((api.method.lower(), api.url) for api in version.apis)
    for i, api in enumerate(version.apis):
        if keys[(api.method.lower(), api.url)] > 1:
            return invalid(f"{path}.apis[{i}]", f"{api.method} {api.url} is declared twice")
        if api.request is not None:
            problems = schema_problems(api.request.data, f"{path}.apis[{i}].request.data")
            if problems:
                return invalid(*problems[0])
        declared = api.model_dump(by_alias=True)
        if is_websocket_api(declared):
            problem = websocket_api_problem(declared)
            if problem is not None:
                return invalid(f"{path}.apis[{i}].{problem[0]}", problem[1])
    first = version.apis[0]
    schema = request_schema(first.model_dump(by_alias=True))
    return VersionVerdict(version.version, True, input_type(schema), "")
