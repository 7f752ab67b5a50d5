"""`inferops agent` as both planes see it: the options, the argv the operator writes into a
collecting pod, and the command line the agent parses.

One table of flags (`_FLAGS`) defines both directions, so a flag cannot be rendered by the
builder and unknown to the agent (or parsed under another name): `AgentOptions.argv` walks
it to write the container's args and `add_agent_arguments` walks it to declare the argparse
options. `options_from_args` turns a parsed command line back into `AgentOptions`, filling
service, version and pod from the environment the builder sets.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

COMMAND = "agent"
# Serving health (the readiness probe): ok while the proxy serves, whatever the storage does.
HEALTH_PATH = "/inferops-agent/healthz"
# Collection health: 503 once uploads have failed UPLOADS_FAILING_AFTER times in a row.
UPLOADS_HEALTH_PATH = "/inferops-agent/healthz/uploads"
STATS_PATH = "/inferops-agent/stats"
UPLOADS_FAILING_AFTER = 3  # consecutive failed flushes, each a flush period apart
DEFAULT_PORT = 8081
DEFAULT_HOST = "0.0.0.0"
DEFAULT_UPSTREAM = "http://127.0.0.1:8080"
DEFAULT_FLUSH_SECONDS = 10.0
DEFAULT_FLUSH_LINES = 1000
DEFAULT_MAX_BUFFER_LINES = 10000
DEFAULT_MAX_BUFFER_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_CAPTURE_BYTES = 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 300.0
UNKNOWN = "unknown"  # service, version or pod when neither the flag nor the env names it
SERVICE_ENV = "INFEROPS_SERVICE"
VERSION_ENV = "INFEROPS_VERSION"
POD_ENV = "POD_NAME"  # the builder fills it from the downward API (metadata.name)

# Never written into a record in clear (names compared case-insensitively); a service adds
# its own names to these (dataCollection.redactHeaders / redactQueryParameters).
REDACTED = "[REDACTED]"
DEFAULT_REDACT_HEADERS = (
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
    "x-api-key",
)
DEFAULT_REDACT_QUERY_PARAMETERS = (
    "api_key",
    "apikey",
    "key",
    "token",
    "access_token",
    "password",
    "secret",
    "sig",
    "signature",
)


def name_list(names: Iterable[str]) -> tuple[str, ...]:
    """Names as the agent compares them: stripped, lower-case, each once, in order."""
    out: dict[str, None] = {}
    for name in names:
        cleaned = name.strip().lower()
        if cleaned:
            out[cleaned] = None
    return tuple(out)


@dataclass(frozen=True)
class AgentOptions:
    """Everything `inferops agent` is configured with (the CLI options, parsed)."""

    output: str
    upstream: str = DEFAULT_UPSTREAM
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    sample_ratio: float = 1.0
    service: str = UNKNOWN
    version: str = UNKNOWN
    pod: str = UNKNOWN
    flush_seconds: float = DEFAULT_FLUSH_SECONDS
    flush_lines: int = DEFAULT_FLUSH_LINES
    max_buffer_lines: int = DEFAULT_MAX_BUFFER_LINES
    max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_capture_bytes: int = DEFAULT_MAX_CAPTURE_BYTES
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    endpoint: str | None = None
    region: str | None = None
    # Redacted in records on top of DEFAULT_REDACT_HEADERS / _QUERY_PARAMETERS (name_list).
    redact_headers: tuple[str, ...] = ()
    redact_query_parameters: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        """The container args running the agent with these options: `agent`, the flags of
        `_POD_FLAGS` always, then every other option that differs from its default.

        A service, version or pod left at "unknown" is not written: the agent then takes it
        from its environment (the pod name from $POD_NAME, which the builder sets)."""
        args = [COMMAND]
        for flag in _pod_order():
            value = getattr(self, flag.field)
            if flag.flag in _POD_FLAGS or value != _DEFAULTS[flag.field]:
                args += [flag.flag, flag.text(value)]
        return args


# --- value checks of the command line -----------------------------------------------------


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text}")
    return value


def _names(pattern: re.Pattern[str], what: str) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = name_list(text.split(","))
        for name in names:
            if not pattern.fullmatch(name):
                raise argparse.ArgumentTypeError(f"not a {what}: {name!r}")
        return names

    return parse


# RFC 9110 token; a query parameter name as written in the URL (no separators in it).
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")
_QUERY_NAME = re.compile(r"[^\s,&=#]{1,128}")


def _comma_list(value: Any) -> str:
    return ",".join(value)


# --- the flags ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Flag:
    """One command-line option and the `AgentOptions` field it sets."""

    flag: str
    field: str
    help: str
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    env: str | None = None  # unset on the command line: read from this variable at start
    text: Callable[[Any], str] = str  # how argv writes the value


# In `inferops agent --help` order.
_FLAGS: tuple[_Flag, ...] = (
    _Flag(
        "--output",
        "output",
        "folder for the JSON lines: obs://, s3://, file:// or a local path",
        metavar="LOCATION",
    ),
    _Flag(
        "--upstream",
        "upstream",
        f"the model's base URL (default {DEFAULT_UPSTREAM})",
        metavar="URL",
    ),
    _Flag("--port", "port", "port (default 8081)", type=int),
    _Flag("--host", "host", "address (default 0.0.0.0)"),
    _Flag(
        "--sample-ratio",
        "sample_ratio",
        "fraction of requests recorded, 0..1 (default 1)",
        type=_ratio,
        metavar="RATIO",
    ),
    _Flag(
        "--service", "service", f"service name in records (default ${SERVICE_ENV})", env=SERVICE_ENV
    ),
    _Flag("--version", "version", f"version in records (default ${VERSION_ENV})", env=VERSION_ENV),
    _Flag("--pod", "pod", f"pod name in records (default ${POD_ENV}, else hostname)", env=POD_ENV),
    _Flag(
        "--flush-seconds",
        "flush_seconds",
        "write buffered lines this often (default 10)",
        type=_positive_float,
        metavar="SECONDS",
    ),
    _Flag(
        "--flush-lines",
        "flush_lines",
        "write as soon as this many lines wait (default 1000)",
        type=_positive_int,
        metavar="N",
    ),
    _Flag(
        "--max-buffer-lines",
        "max_buffer_lines",
        "most lines kept in memory; the oldest are dropped beyond it (default 10000)",
        type=_positive_int,
        metavar="N",
    ),
    _Flag(
        "--max-buffer-bytes",
        "max_buffer_bytes",
        "most bytes of lines kept in memory; a write starts at half of it (default 64 MiB)",
        type=_positive_int,
        metavar="N",
    ),
    _Flag(
        "--max-body-bytes",
        "max_body_bytes",
        "largest request body proxied; larger ones get 413 (default 16 MiB)",
        type=_positive_int,
        metavar="N",
    ),
    _Flag(
        "--max-capture-bytes",
        "max_capture_bytes",
        "most bytes of a body recorded; a larger body is recorded truncated, marked as such "
        "(default 1 MiB)",
        type=_positive_int,
        metavar="N",
    ),
    _Flag(
        "--timeout",
        "timeout_seconds",
        "longest wait for the model's answer (then 504) or, once it streams, for its next bytes "
        "(default 300)",
        type=_positive_float,
        metavar="SECONDS",
    ),
    _Flag("--endpoint", "endpoint", "S3 API endpoint (default: $INFEROPS_S3_ENDPOINT)"),
    _Flag("--region", "region", "S3 region (default: $AWS_REGION or us-east-1)"),
    _Flag(
        "--redact-headers",
        "redact_headers",
        "comma-separated header names recorded as [REDACTED], on top of "
        + ", ".join(DEFAULT_REDACT_HEADERS),
        type=_names(_HEADER_NAME, "header name"),
        metavar="NAMES",
        text=_comma_list,
    ),
    _Flag(
        "--redact-query-parameters",
        "redact_query_parameters",
        "comma-separated query parameter names recorded as [REDACTED], on top of "
        + ", ".join(DEFAULT_REDACT_QUERY_PARAMETERS),
        type=_names(_QUERY_NAME, "query parameter name"),
        metavar="NAMES",
        text=_comma_list,
    ),
)

# Written into every pod even at their defaults, first and in this order: they say where
# the agent listens, what it proxies, where it writes and how much, which a reader of the
# pod spec wants to see. Changing the order changes every collecting pod template, and so
# rolls every collecting Deployment when the operator is upgraded.
_POD_FLAGS = ("--port", "--upstream", "--output", "--sample-ratio")

_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(AgentOptions)}


def _pod_order() -> list[_Flag]:
    by_flag = {flag.flag: flag for flag in _FLAGS}
    return [by_flag[name] for name in _POD_FLAGS] + [
        flag for flag in _FLAGS if flag.flag not in _POD_FLAGS
    ]


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the options of `inferops agent` on its (sub)parser."""
    for flag in _FLAGS:
        kwargs: dict[str, Any] = {"dest": flag.field, "help": flag.help}
        default = _DEFAULTS[flag.field]
        if default is dataclasses.MISSING:
            kwargs["required"] = True
        elif flag.env is None:
            kwargs["default"] = default
        if flag.type is not None:
            kwargs["type"] = flag.type
        if flag.metavar is not None:
            kwargs["metavar"] = flag.metavar
        parser.add_argument(flag.flag, **kwargs)


def options_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> AgentOptions:
    """The options of a parsed `inferops agent` command line; names default to the env."""
    env = os.environ if environ is None else environ
    values = {flag.field: getattr(args, flag.field) for flag in _FLAGS}
    for flag in _FLAGS:
        if flag.env is not None:
            values[flag.field] = values[flag.field] or env.get(flag.env) or _last_resort(flag)
    return AgentOptions(**values)


def _last_resort(flag: _Flag) -> str:
    """A name set neither on the command line nor in the env: the pod is at least its host."""
    return (socket.gethostname() if flag.field == "pod" else "") or UNKNOWN
