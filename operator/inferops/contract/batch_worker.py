"""What one batch worker does: `WorkerConfig` and the environment that carries it.

The operator's Job builder derives the config from a BatchService spec and its app version
(`worker_config`), serialises it into the Job's env (`config_to_env_json`, CONFIG_ENV and
WORKERS_ENV), and every pod of the Indexed Job reads it back (`config_from_env`) with its
own index from JOB_COMPLETION_INDEX. `inferops batch run` builds the same config from whole
objects (`config_from_service`) in one process.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from inferops.api.application import AIApplicationSpec, ApiDefinition, AppVersion
from inferops.api.batch import BatchServiceSpec
from inferops.contract.batch_paths import output_inside_input, output_inside_input_message
from inferops.contract.request_schema import (
    InputType,
    JsonObject,
    file_property,
    generate_mapping,
    input_type,
    request_schema,
)

CONFIG_ENV = "INFEROPS_BATCH_CONFIG"
WORKERS_ENV = "INFEROPS_BATCH_WORKERS"
INDEX_ENV = "JOB_COMPLETION_INDEX"

DEFAULT_MAX_IMAGE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_CSV_BYTES = 12 * 1024 * 1024
# Files that are neither images nor CSV have no limit in the seed; this one only keeps a
# worker's memory (concurrency x file size) inside its container.
DEFAULT_MAX_FILE_BYTES = 100 * 1024 * 1024
DEFAULT_MANIFEST_MAX_LINES = 10_000
# The largest model answer a worker reads (per request): it holds an answer whole until it
# is written, so this and `concurrency` bound its memory whatever the model sends.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024


MAX_IO_THREADS = 64


def io_threads_default(concurrency: int) -> int:
    """Every source in flight needs a read and then a write: with object storage a few tens
    of milliseconds away, fewer threads than that would leave the model idle. 10 at least
    (botocore's own pool size), 64 at most."""
    return min(MAX_IO_THREADS, max(10, 2 * concurrency))


class ConfigError(ValueError):
    """A worker configuration that cannot be used; the message names the field."""


@dataclass(frozen=True)
class WorkerConfig:
    """Everything one worker needs; JSON-serialisable (see `config_to_env_json`)."""

    input_path: str
    output_path: str
    model_url: str
    task_id: str
    request_path: str = "/"
    input_type: InputType = "json"
    file_field: str | None = None
    # Only for JSON input: the request schema with CSV column `index`es.
    mapping: JsonObject | None = field(default=None, hash=False)
    worker_index: int = 0
    worker_count: int = 1
    concurrency: int = 4
    request_timeout_seconds: float = 60.0
    retries: int = 3
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 10.0
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_csv_bytes: int = DEFAULT_MAX_CSV_BYTES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    manifest_max_lines: int = DEFAULT_MANIFEST_MAX_LINES
    # The current manifest chunk is rewritten this often (and when it is full), which
    # bounds the work a restarted worker redoes.
    flush_seconds: float = 5.0
    flush_lines: int = 1000
    s3_endpoint: str | None = None
    s3_region: str | None = None
    # http:// sources (pre-signed URLs of an in-cluster store without TLS, or tests).
    allow_http_sources: bool = False
    # CIDRs that https:// sources may reach although private, loopback or link-local (the
    # catalog's batch.allowedNetworks); any other such address is refused (storage.egress).
    allowed_networks: list[str] = field(default_factory=list, hash=False)
    # file:// and local paths (inputPath, outputPath, sources): only `inferops batch run`
    # allows them. In a pod they would read the worker's own files, or write into a
    # container's filesystem that is thrown away.
    allow_local_paths: bool = False
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    # Threads (and S3 connections) for storage calls; None: `io_threads_default`.
    io_threads: int | None = None

    @property
    def storage_threads(self) -> int:
        return self.io_threads or io_threads_default(self.concurrency)

    def __post_init__(self) -> None:
        problems = [*_input_problems(self), *_number_problems(self)]
        if problems:
            raise ConfigError("; ".join(problems))


_REQUIRED_STRINGS = ("input_path", "output_path", "model_url", "task_id", "request_path")
_POSITIVE_INTS = (
    "worker_count",
    "concurrency",
    "max_image_bytes",
    "max_csv_bytes",
    "max_file_bytes",
    "manifest_max_lines",
    "max_response_bytes",
    "flush_lines",
)


def _is_int(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _input_problems(config: WorkerConfig) -> list[str]:
    problems = [
        f"{name}: must be a non-empty string"
        for name in _REQUIRED_STRINGS
        if not isinstance(getattr(config, name), str) or not getattr(config, name)
    ]
    if config.input_type not in ("json", "file"):
        problems.append(f"input_type: {config.input_type!r} is not json or file")
    if config.input_type == "file" and not config.file_field:
        problems.append("file_field: file input needs the form field name")
    if config.input_type == "json" and not isinstance(config.mapping, dict):
        problems.append("mapping: JSON input needs a mapping object")
    paths = (config.input_path, config.output_path)
    if all(isinstance(p, str) and p for p in paths) and output_inside_input(*paths):
        problems.append(f"output_path: {output_inside_input_message(config.input_path)}")
    problems.extend(_network_problems(config.allowed_networks))
    return problems


def _network_problems(networks: Any) -> list[str]:
    if not isinstance(networks, list):
        return [f"allowed_networks: must be a list of CIDRs, not {networks!r}"]
    problems = []
    for i, cidr in enumerate(networks):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except (TypeError, ValueError):
            problems.append(f"allowed_networks[{i}]: {cidr!r} is not a CIDR")
    return problems


def _number_problems(config: WorkerConfig) -> list[str]:
    problems = [
        f"{name}: must be an integer >= 1, not {getattr(config, name)!r}"
        for name in _POSITIVE_INTS
        if not _is_int(getattr(config, name), 1)
    ]
    if config.io_threads is not None and not _is_int(config.io_threads, 1):
        problems.append(f"io_threads: must be an integer >= 1, not {config.io_threads!r}")
    if not isinstance(config.allow_local_paths, bool):
        problems.append(
            f"allow_local_paths: must be true or false, not {config.allow_local_paths!r}"
        )
    if not isinstance(config.retries, int) or config.retries < 0:
        problems.append(f"retries: must be an integer >= 0, not {config.retries!r}")
    for name in ("request_timeout_seconds", "flush_seconds"):
        value = getattr(config, name)
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            problems.append(f"{name}: must be a finite number > 0, not {value!r}")
    index = config.worker_index
    if not isinstance(index, int) or not 0 <= index < max(1, int(config.worker_count or 1)):
        problems.append(f"worker_index: {index!r} is not in 0..worker_count-1")
    return problems


_FIELDS = {f.name for f in dataclasses.fields(WorkerConfig)}


def config_from_dict(data: Mapping[str, Any]) -> WorkerConfig:
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ConfigError(f"unknown worker config fields: {', '.join(unknown)}")
    try:
        return WorkerConfig(**data)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(str(exc)) from None


def config_to_env_json(config: WorkerConfig) -> str:
    """The config as the JSON the operator puts in INFEROPS_BATCH_CONFIG."""
    return json.dumps(dataclasses.asdict(config), separators=(",", ":"), sort_keys=True)


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not an integer") from None


def config_from_env(environ: Mapping[str, str]) -> WorkerConfig:
    """INFEROPS_BATCH_CONFIG, with the index and count of this pod of the Indexed Job."""
    text = environ.get(CONFIG_ENV)
    if not text:
        raise ConfigError(f"{CONFIG_ENV} is not set")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{CONFIG_ENV}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{CONFIG_ENV}: must be a JSON object")
    index, count = _env_int(environ, INDEX_ENV), _env_int(environ, WORKERS_ENV)
    if index is not None:
        data["worker_index"] = index
    if count is not None:
        data["worker_count"] = count
    return config_from_dict(data)


def _setting(limits: Any, name: str, camel: str, default: Any) -> Any:
    """A batch setting from the catalog's BatchLimits model or a plain mapping."""
    if limits is None:
        return default
    if isinstance(limits, Mapping):
        return limits.get(name, limits.get(camel, default))
    return getattr(limits, name, default)


def _limit(limits: Any, name: str, camel: str, default: int) -> int:
    return int(_setting(limits, name, camel, default))


def config_from_service(  # noqa: PLR0917 (the positional order is the operator's contract)
    batch_obj: Mapping[str, Any],
    app_obj: Mapping[str, Any],
    model_url: str,
    task_id: str,
    worker_index: int = 0,
    worker_count: int | None = None,
    limits: Any = None,
    **overrides: Any,
) -> WorkerConfig:
    """The worker config of a BatchService (whole object or spec) and its AIApplication.

    worker_count defaults to spec.computeNodes; limits is the catalog's BatchLimits (or a
    mapping with maxImageBytes, maxCsvBytes, manifestMaxLines, maxResponseBytes,
    allowedNetworks); overrides replace any other field (e.g. request_timeout_seconds).
    """
    try:
        spec = BatchServiceSpec.model_validate(batch_obj.get("spec", batch_obj))
    except ValidationError as exc:
        raise ConfigError(f"BatchService: {_problems(exc)}") from None
    try:
        app = AIApplicationSpec.model_validate(app_obj.get("spec", app_obj))
    except ValidationError as exc:
        raise ConfigError(f"AIApplication: {_problems(exc)}") from None
    version = next((v for v in app.versions if v.version == spec.version), None)
    if version is None:
        known = ", ".join(v.version for v in app.versions)
        raise ConfigError(f"spec.version: {spec.version!r} is not a version of the app ({known})")
    return worker_config(
        spec, version, model_url, task_id, worker_index, worker_count, limits, **overrides
    )


def worker_config(  # noqa: PLR0917 (the positional order is the operator's contract)
    spec: BatchServiceSpec,
    version: AppVersion,
    model_url: str,
    task_id: str,
    worker_index: int = 0,
    worker_count: int | None = None,
    limits: Any = None,
    **overrides: Any,
) -> WorkerConfig:
    """The worker config of a parsed BatchService spec and the app version it runs."""
    api = _select_api(version.apis, spec.request_path)
    schema = request_schema(api.model_dump(by_alias=True)) if api else {}
    kind = input_type(schema)
    request_path = spec.request_path or (api.url if api else "/")
    values: dict[str, Any] = {
        "input_path": spec.input_path,
        "output_path": spec.output_path,
        "model_url": model_url,
        "task_id": task_id,
        "request_path": request_path,
        "input_type": kind,
        "file_field": file_property(schema) if kind == "file" else None,
        "mapping": (spec.mapping or generate_mapping(schema)) if kind == "json" else None,
        "worker_index": worker_index,
        "worker_count": spec.compute_nodes if worker_count is None else worker_count,
        "concurrency": spec.concurrency,
        "max_image_bytes": _limit(
            limits, "max_image_bytes", "maxImageBytes", DEFAULT_MAX_IMAGE_BYTES
        ),
        "max_csv_bytes": _limit(limits, "max_csv_bytes", "maxCsvBytes", DEFAULT_MAX_CSV_BYTES),
        "manifest_max_lines": _limit(
            limits, "manifest_max_lines", "manifestMaxLines", DEFAULT_MANIFEST_MAX_LINES
        ),
        "max_response_bytes": _limit(
            limits, "max_response_bytes", "maxResponseBytes", DEFAULT_MAX_RESPONSE_BYTES
        ),
        "allowed_networks": list(_setting(limits, "allowed_networks", "allowedNetworks", [])),
        "s3_endpoint": spec.storage.endpoint if spec.storage else None,
        "s3_region": spec.storage.region if spec.storage else None,
    }
    values.update(overrides)
    return config_from_dict(values)


def _problems(exc: ValidationError) -> str:
    """A pydantic error as one line: `spec.field: message; ...`."""
    return "; ".join(
        ".".join(["spec", *(str(part) for part in error["loc"])]) + ": " + error["msg"]
        for error in exc.errors()
    )


def _select_api(apis: list[ApiDefinition], request_path: str | None) -> ApiDefinition | None:
    """The API the service calls: the one at requestPath, else the first (validation
    reports a requestPath that is not among the app's urls)."""
    if not apis:
        return None
    return next((a for a in apis if a.url == request_path), apis[0])
