"""`inferops agent`: the data-collection sidecar of a RealTimeService version.

A small reverse proxy in front of the model container: every request (any method, path,
query, headers minus hop-by-hop ones, body) goes to the model over a keep-alive client and
the model's answer comes back unchanged. Both directions stream: bytes pass through as
they come (a chunked answer stays chunked, server-sent events arrive as sent), so the
agent's memory does not follow the size of bodies. For a sampled fraction of the requests
it records one JSON line (request and response with their sizes and headers, status,
latency, service, version, pod) in a bounded in-memory buffer that is written to object
storage as `<output>/<service>/<version>/<pod>-<UTC timestamp>-<seq>.jsonl` every
`--flush-seconds`, whenever `--flush-lines` lines or half of `--max-buffer-bytes` wait, and
on shutdown (SIGTERM).

A record keeps at most `--max-capture-bytes` of each body, taken while it streams; a
longer body is recorded cut and marked (`requestTruncated`/`responseTruncated`, with the
whole size in `requestBytes`/`responseBytes`). Credentials never reach a record in clear:
the values of the query parameters and headers named in `inferops.contract.agent`
(`DEFAULT_REDACT_*`) and of those the service adds (`--redact-headers`,
`--redact-query-parameters`) are recorded as `[REDACTED]`; the model still gets them.

Uploads run in a thread (the storage layer is synchronous boto3) so the proxy never waits
for object storage. A failed upload is logged and its lines are kept for the next attempt;
when the buffer is full the oldest lines are dropped and counted (`dropped`).
`GET /inferops-agent/healthz` (the readiness probe) is answered by the agent itself and
stays 200 while it serves, whatever the storage does, so a broken bucket never takes the
model out of its Service. Storage trouble shows in `GET /inferops-agent/stats`
(`uploadsFailing`, `consecutiveFailedUploads`, `dropped`, `lastError`) and in
`GET /inferops-agent/healthz/uploads`, which answers 503 once uploads have failed three
times in a row (three flush periods) until one succeeds: the path for monitoring to probe.
Any other path, the model's own health path included, goes to the model (kubelet probes,
`User-Agent: kube-probe/...`, are proxied but never recorded). WebSocket is not supported
(the API forbids data collection on WebSocket services).

One module per job: `buffer` (the bounded line queue), `collector` (writing it to
storage), `capture` (how bodies and times are recorded), `redact` (what records never hold
in clear), `proxy` (the aiohttp app), `command` (the `agent` subcommand). Options, flags
and paths shared with the operator's pod builder are in `inferops.contract.agent`; they are
re-exported here with the rest so `from inferops.runtime.agent import ...` keeps working.
"""

from inferops.contract.agent import (
    DEFAULT_FLUSH_LINES,
    DEFAULT_FLUSH_SECONDS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_BUFFER_BYTES,
    DEFAULT_MAX_BUFFER_LINES,
    DEFAULT_MAX_CAPTURE_BYTES,
    DEFAULT_PORT,
    DEFAULT_REDACT_HEADERS,
    DEFAULT_REDACT_QUERY_PARAMETERS,
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_UPSTREAM,
    HEALTH_PATH,
    POD_ENV,
    REDACTED,
    SERVICE_ENV,
    STATS_PATH,
    UPLOADS_FAILING_AFTER,
    UPLOADS_HEALTH_PATH,
    VERSION_ENV,
    AgentOptions,
    options_from_args,
)
from inferops.runtime.agent.buffer import Batch, LineBuffer
from inferops.runtime.agent.capture import BodyTap, Captured, capture_body, is_json_type, rfc3339
from inferops.runtime.agent.collector import (
    CONTENT_TYPE_JSONL,
    Collector,
    CollectorStats,
    build_collector,
    safe_name,
)
from inferops.runtime.agent.command import cmd_agent
from inferops.runtime.agent.proxy import (
    COLLECTOR_KEY,
    HOP_BY_HOP,
    OPTIONS_KEY,
    PROBE_USER_AGENT,
    REDACTION_KEY,
    SESSION_KEY,
    build_app,
)
from inferops.runtime.agent.redact import Redaction

__all__ = [
    "COLLECTOR_KEY",
    "CONTENT_TYPE_JSONL",
    "DEFAULT_FLUSH_LINES",
    "DEFAULT_FLUSH_SECONDS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_BUFFER_BYTES",
    "DEFAULT_MAX_BUFFER_LINES",
    "DEFAULT_MAX_CAPTURE_BYTES",
    "DEFAULT_PORT",
    "DEFAULT_REDACT_HEADERS",
    "DEFAULT_REDACT_QUERY_PARAMETERS",
    "DEFAULT_TIMEOUT_SECONDS",
    "DEFAULT_UPSTREAM",
    "HEALTH_PATH",
    "HOP_BY_HOP",
    "OPTIONS_KEY",
    "POD_ENV",
    "PROBE_USER_AGENT",
    "REDACTED",
    "REDACTION_KEY",
    "SERVICE_ENV",
    "SESSION_KEY",
    "STATS_PATH",
    "UPLOADS_FAILING_AFTER",
    "UPLOADS_HEALTH_PATH",
    "VERSION_ENV",
    "AgentOptions",
    "Batch",
    "BodyTap",
    "Captured",
    "Collector",
    "CollectorStats",
    "LineBuffer",
    "Redaction",
    "build_app",
    "build_collector",
    "capture_body",
    "cmd_agent",
    "is_json_type",
    "options_from_args",
    "rfc3339",
    "safe_name",
]
