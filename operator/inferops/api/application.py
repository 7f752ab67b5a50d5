"""AIApplication: a model and its versions, each with the platform's `config.json` APIs."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from inferops.api.base import (
    MAX_ENV,
    ApiModel,
    Condition,
    EnvVar,
    JsonObject,
    cel,
    default_object,
    rules,
)

VERSION_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
HTTP_PATH_PATTERN = r"^/[^\s?#]*$"
MODEL_URI_PATTERN = r"^((obs|s3)://[^/\s]+(/\S*)?|https://\S+|file://\S+)$"
METHOD_PATTERN = r"^(get|post|put|patch|delete|GET|POST|PUT|PATCH|DELETE)$"

MAX_VERSIONS = 50
MSG_UNIQUE_VERSIONS = "each version name may appear only once"
MAX_APIS = 32


class ApiBody(ApiModel):
    """A request or response description: content type and a JSON schema of the body."""

    content_type: str = Field(
        "application/json",
        alias="Content-type",
        description="MIME type of the body: application/json, or multipart/form-data for files.",
        max_length=256,
    )
    data: JsonObject = Field(
        default_factory=dict,
        description='JSON schema of the body. A property of "type": "file" makes the '
        "version take file input; otherwise it takes JSON input.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "type": "object"},
    )


class ApiDefinition(ApiModel):
    """One entry of the app's config.json `apis` list, in the platform's own format."""

    method: str = Field(description="HTTP method, e.g. post.", pattern=METHOD_PATTERN, max_length=6)
    url: str = Field(
        description="Request path served by the model, e.g. / or /predict.",
        pattern=HTTP_PATH_PATTERN,
        max_length=1024,
    )
    request: ApiBody | None = Field(None, description="Request body description.")
    response: ApiBody | None = Field(None, description="Response body description.")
    idempotent: bool = Field(
        True,
        description="false when calling this API twice is not like calling it once (it "
        "writes, charges, sends); a RealTimeService refuses this version as a shadow, "
        "since a shadow repeats the requests of production.",
    )


class HealthCheck(ApiModel):
    """How the platform asks a model instance whether it is ready to serve."""

    path: str = Field(
        "/health",
        description="HTTP GET path answering 200 when ready.",
        pattern=HTTP_PATH_PATTERN,
        max_length=1024,
    )
    initial_delay_seconds: int = Field(
        0, ge=0, le=3600, description="Delay before the first probe."
    )
    period_seconds: int = Field(10, ge=1, le=3600, description="Seconds between probes.")
    timeout_seconds: int = Field(5, ge=1, le=3600, description="Seconds before a probe times out.")
    failure_threshold: int = Field(
        3, ge=1, le=100, description="Consecutive failures before the instance is not ready."
    )


class AppVersion(ApiModel):
    """One version of the application: an image that serves the declared APIs."""

    version: str = Field(
        description="Version name, unique within the application, e.g. 1.0.0.",
        pattern=VERSION_PATTERN,
        max_length=63,
    )
    image: str = Field(
        description="Container image serving the model.", min_length=1, max_length=512
    )
    command: list[str] | None = Field(
        None, description="Overrides the image's entrypoint.", max_length=64
    )
    args: list[str] | None = Field(None, description="Arguments to the entrypoint.", max_length=256)
    port: int = Field(8080, ge=1, le=65535, description="Port the model listens on.")
    health: HealthCheck = Field(
        default_factory=HealthCheck,
        description="Readiness check of the model.",
        json_schema_extra=default_object(),
    )
    websocket: bool = Field(False, description="Whether the app speaks WebSocket.")
    model_uri: str | None = Field(
        None,
        description="Model files fetched into /mnt/models before the model starts: "
        "obs://, s3://, https:// or file://.",
        pattern=MODEL_URI_PATTERN,
        max_length=2048,
    )
    env: list[EnvVar] | None = Field(
        None,
        description="Default environment of every service using this version.",
        max_length=MAX_ENV,
    )
    apis: list[ApiDefinition] = Field(
        default_factory=list,
        description="The app's APIs (config.json `apis`). The first one is the default "
        "request path of batch services.",
        max_length=MAX_APIS,
    )


class AIApplicationSpec(ApiModel):
    """Desired state of an AIApplication."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.versions.all(a, self.versions.exists_one(b, b.version == a.version))",
                MSG_UNIQUE_VERSIONS,
                field_path=".versions",
            )
        )
    )

    description: str = Field("", description="What the application does.", max_length=1024)
    versions: list[AppVersion] = Field(
        description="Versions of the application.", min_length=1, max_length=MAX_VERSIONS
    )


class AppVersionStatus(ApiModel):
    """What the operator found when it checked one version."""

    version: str = Field(description="The version checked.")
    phase: Literal["Normal", "Invalid"] = Field(
        description="Normal: services may use it. Invalid: see message."
    )
    input_type: Literal["file", "json"] | None = Field(
        None, description="file when the request schema has a file property, else json."
    )
    message: str = Field("", description="Why the version is Invalid.")


class AIApplicationStatus(ApiModel):
    """Observed state of an AIApplication."""

    observed_generation: int | None = Field(None, description="Generation last checked.")
    versions: list[AppVersionStatus] = Field(
        default_factory=list, description="Per-version verdicts."
    )
    summary: str = Field("", description="Normal versions out of all, e.g. 2/2.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready condition.")
