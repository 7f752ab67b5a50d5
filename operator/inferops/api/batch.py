"""BatchService: run an application version once over every file of a folder or manifest."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from inferops.api.application import HTTP_PATH_PATTERN
from inferops.api.base import (
    MAX_ENV,
    ApiModel,
    Condition,
    EnvVar,
    JsonObject,
    StorageSpec,
)
from inferops.api.names import DNS1123_LABEL
from inferops.api.paths import FLAVOR_NAME_PATTERN, STORAGE_PATH_PATTERN
from inferops.api.realtime import MAX_COMPUTE_NODES, timeout_field
from inferops.api.refs import ApplicationRef, VersionRef

BatchPhase = Literal["Deploying", "Running", "Completed", "Failed", "Stopped"]
MAX_CONCURRENCY = 256


class BatchServiceSpec(ApiModel):
    """Desired state of a BatchService."""

    description: str = Field("", description="What the batch run is for.", max_length=1024)
    application: ApplicationRef
    version: VersionRef
    input_path: str = Field(
        description='A folder, or a .manifest file of JSON lines {"source": ...}; '
        "obs://bucket/key, s3://bucket/key, file:// or a local path.",
        pattern=STORAGE_PATH_PATTERN,
        max_length=2048,
    )
    request_path: str | None = Field(
        None,
        description="Path the worker calls; default: the first API url of the app.",
        pattern=HTTP_PATH_PATTERN,
        max_length=1024,
    )
    mapping: JsonObject | None = Field(
        None,
        description="For JSON-input apps: the request schema with an `index` (CSV column, "
        "from 0) on every string/number/integer/boolean leaf. Generated from the app's "
        "request schema when absent.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "type": "object"},
    )
    output_path: str = Field(
        description="Folder receiving infer-result-{taskId}/ and the output manifests.",
        pattern=STORAGE_PATH_PATTERN,
        max_length=2048,
    )
    specification: str = Field(
        description="Flavor name from the catalog; it must be offered in the public pool.",
        pattern=FLAVOR_NAME_PATTERN,
        max_length=63,
    )
    compute_nodes: int = Field(
        1, ge=1, le=MAX_COMPUTE_NODES, description="Number of workers, each taking a shard."
    )
    env: list[EnvVar] | None = Field(
        None, description="Environment of the model container.", max_length=MAX_ENV
    )
    timeout_minutes: int = timeout_field()
    storage: StorageSpec | None = Field(None, description="Object-storage access.")
    concurrency: int = Field(
        4, ge=1, le=MAX_CONCURRENCY, description="In-flight requests per worker."
    )
    stopped: bool = Field(False, description="Suspend the run and report Stopped.")
    queue_name: str | None = Field(
        None,
        description="Kueue LocalQueue to admit the Job through.",
        pattern=DNS1123_LABEL,
        max_length=63,
    )


class BatchProgress(ApiModel):
    """How far the run is."""

    total: int = Field(0, description="Sources found.")
    succeeded: int = Field(0, description="Sources reported SUCCESSFUL.")
    failed: int = Field(0, description="Sources reported FAILED.")


class BatchServiceStatus(ApiModel):
    """Observed state of a BatchService."""

    phase: BatchPhase | None = Field(None, description="Lifecycle phase.")
    task_id: str | None = Field(None, description="Batch task ID, used in output names.")
    progress: BatchProgress = Field(default_factory=BatchProgress, description="Counts.")
    progress_summary: str = Field("", description="Done out of total, e.g. 80/100.")
    output_manifests: list[str] = Field(
        default_factory=list, description="Output manifests written so far."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Progressing.")
    observed_generation: int | None = Field(None, description="Generation last reconciled.")
    message: str = Field("", description="Why the service is in its phase.")
