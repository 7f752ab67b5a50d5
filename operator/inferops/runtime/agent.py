"""`inferops agent`: the data-collection sidecar of a RealTimeService version.

A small reverse proxy in front of the model container: every request (any method, path,
query, headers minus hop-by-hop ones, body) goes to the model over a keep-alive client and
the model's answer comes back unchanged. For a sampled fraction of the requests it records
one JSON line (request, response, status, latency, service, version, pod) in a bounded
in-memory buffer that is written to object storage as
`<output>/<service>/<version>/<pod>-<UTC timestamp>-<seq>.jsonl` every `--flush-seconds`,
whenever `--flush-lines` lines are waiting, and on shutdown (SIGTERM).

Uploads run in a thread (the storage layer is synchronous boto3) so the proxy never waits
for object storage. A failed upload is logged and its lines are kept for the next attempt;
when the buffer is full the oldest lines are dropped and counted (`dropped`).
`GET /inferops-agent/healthz` is answered by the agent itself; any other path, the model's
own health path included, goes to the model (kubelet probes, `User-Agent: kube-probe/...`,
are proxied but never recorded). WebSocket is not supported (the API forbids
data collection on WebSocket services).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import random
import re
import sys
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from inferops.contract.agent import (
    COMMAND,
    DEFAULT_FLUSH_LINES,
    DEFAULT_FLUSH_SECONDS,
    DEFAULT_MAX_BUFFER_BYTES,
    DEFAULT_MAX_BUFFER_LINES,
    HEALTH_PATH,
    STATS_PATH,
    AgentOptions,
    add_agent_arguments,
    options_from_args,
)
from inferops.storage import Location, Storage, StorageError, parse_location

log = logging.getLogger(__name__)

CONTENT_TYPE_JSONL = "application/x-ndjson"
PROBE_USER_AGENT = "kube-probe/"

# RFC 9110 section 7.6.1 plus the legacy names proxies drop; Host and Content-Length are
# set by the client for the upstream hop, Expect was already answered by this server.
HOP_BY_HOP = frozenset(
    name.lower()
    for name in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Trailers",
        "Transfer-Encoding",
        "Upgrade",
    )
)
_REQUEST_SKIP = HOP_BY_HOP | {"host", "content-length", "expect"}
# Headers the client would otherwise invent: the model sees exactly what the caller sent.
_NO_AUTO_HEADERS = (hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.USER_AGENT, hdrs.CONTENT_TYPE)
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


# --- the buffer --------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """Lines taken for one upload: `start` is the absolute index of the first line."""

    start: int
    lines: tuple[bytes, ...]

    @property
    def end(self) -> int:
        return self.start + len(self.lines)


class LineBuffer:
    """A bounded FIFO of encoded JSON lines waiting to be uploaded.

    At most `max_lines` lines and `max_bytes` bytes are held; adding past either bound drops
    the oldest lines and counts them in `dropped`. Lines stay in the buffer while an upload
    of them is under way (`take` copies, `commit` removes), so a failed upload loses
    nothing and the bound holds whatever the storage does. Not thread-safe: call it from one
    thread (the event loop); only the copied batch goes to the upload thread.
    """

    def __init__(self, max_lines: int, max_bytes: int = DEFAULT_MAX_BUFFER_BYTES) -> None:
        if max_lines < 1 or max_bytes < 1:
            raise ValueError("the buffer needs room for at least one line")
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.dropped = 0
        self._lines: deque[bytes] = deque()
        self._first = 0  # absolute index of self._lines[0]
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._lines)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def add(self, line: bytes) -> int:
        """Appends one line; returns how many old lines were dropped to make room."""
        self._lines.append(line)
        self._bytes += len(line)
        dropped = 0
        while self._lines and (len(self._lines) > self.max_lines or self._bytes > self.max_bytes):
            self._bytes -= len(self._lines.popleft())
            self._first += 1
            dropped += 1
        self.dropped += dropped
        return dropped

    def take(self, limit: int | None = None) -> Batch:
        """The oldest `limit` lines (default: all) for an upload; they stay until `commit`."""
        count = len(self._lines) if limit is None else min(limit, len(self._lines))
        return Batch(self._first, tuple(self._lines[i] for i in range(count)))

    def commit(self, batch: Batch) -> None:
        """Removes an uploaded batch. Lines of it dropped meanwhile were delivered after all,
        so they no longer count as dropped."""
        delivered_early = max(0, min(self._first, batch.end) - batch.start)
        self.dropped -= delivered_early
        for _ in range(max(0, batch.end - self._first)):
            self._bytes -= len(self._lines.popleft())
        self._first = max(self._first, batch.end)

    def lines(self) -> list[bytes]:
        """A copy of the waiting lines, oldest first."""
        return list(self._lines)


# --- the collector -----------------------------------------------------------------------


def safe_name(text: str) -> str:
    """A single object-name segment: no slashes, no `.`/`..`, never empty."""
    cleaned = _NAME_UNSAFE.sub("_", text.strip())
    return "unknown" if cleaned in ("", ".", "..") else cleaned


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class CollectorStats:
    written_lines: int = 0
    written_files: int = 0
    failed_uploads: int = 0
    last_error: str = ""
    files: list[str] = field(default_factory=list)


class Collector:
    """Buffers sampled lines and writes them to `<output>/<service>/<version>/` in a thread.

    `record` is called by the proxy; `run` is the periodic flusher (every `flush_seconds`,
    or at once when `flush_lines` lines wait); `flush` makes one upload attempt; `close`
    stops the flusher and makes a final attempt.
    """

    MAX_FILES_REMEMBERED = 100

    def __init__(
        self,
        storage: Storage,
        output: Location,
        service: str,
        version: str,
        pod: str,
        *,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        flush_lines: int = DEFAULT_FLUSH_LINES,
        max_buffer_lines: int = DEFAULT_MAX_BUFFER_LINES,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.storage = storage
        self.output = output
        self.service = safe_name(service)
        self.version = safe_name(version)
        self.pod = safe_name(pod)
        self.flush_seconds = flush_seconds
        self.flush_lines = max(1, flush_lines)
        self.buffer = LineBuffer(max_buffer_lines, max_buffer_bytes)
        self.stats = CollectorStats()
        self._clock = clock
        self._seq = 0
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._logged_dropped = 0

    @property
    def dropped(self) -> int:
        return self.buffer.dropped

    def record(self, entry: Mapping[str, Any]) -> None:
        """Adds one JSON line (entry must be JSON-serialisable; NaN is not)."""
        line = json.dumps(entry, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        if self.buffer.add(line.encode("utf-8") + b"\n") and self._logged_dropped == 0:
            self._log_dropped()
        if len(self.buffer) >= self.flush_lines:
            self._wake.set()

    def next_location(self) -> Location:
        """`<output>/<service>/<version>/<pod>-<UTC timestamp>-<seq>.jsonl`."""
        stamp = self._clock().astimezone(UTC)
        text = stamp.strftime("%Y%m%dT%H%M%S") + f"{stamp.microsecond // 1000:03d}Z"
        name = f"{self.service}/{self.version}/{self.pod}-{text}-{self._seq:06d}.jsonl"
        self._seq += 1
        return self.output.child(name)

    def _upload(self, location: Location, lines: Iterable[bytes]) -> None:
        self.storage.write(location, b"".join(lines), CONTENT_TYPE_JSONL)

    def _log_dropped(self) -> None:
        if self.buffer.dropped != self._logged_dropped:
            log.warning(
                "data collection buffer full (%d lines, %d bytes max): dropped=%d lines so far",
                self.buffer.max_lines,
                self.buffer.max_bytes,
                self.buffer.dropped,
            )
            self._logged_dropped = self.buffer.dropped

    async def flush(self) -> bool:
        """One upload of every waiting line; True when nothing is left unwritten.

        A failure is logged and the lines stay buffered (still bounded) for the next try.
        """
        async with self._lock:
            self._log_dropped()
            batch = self.buffer.take()
            if not batch.lines:
                return True
            location = self.next_location()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="inferops-agent")
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._executor, self._upload, location, batch.lines)
            except Exception as exc:  # StorageError, or anything boto3 lets through
                self.stats.failed_uploads += 1
                self.stats.last_error = str(exc)
                log.error(
                    "data collection upload to %s failed, keeping %d lines: %s",
                    location.text,
                    len(self.buffer),
                    exc,
                )
                return False
            self.buffer.commit(batch)
            self.stats.written_lines += len(batch.lines)
            self.stats.written_files += 1
            self.stats.files = [*self.stats.files, location.text][-self.MAX_FILES_REMEMBERED :]
            log.info("data collection: wrote %d lines to %s", len(batch.lines), location.text)
            return True

    async def run(self) -> None:
        """Flushes every `flush_seconds`, or sooner when `flush_lines` lines wait; after a
        failure it waits `flush_seconds` before trying again. Returns once `close` asks."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            if len(self.buffer) and not await self.flush():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.flush_seconds)

    def start(self) -> None:
        """Starts the periodic flusher on the running loop."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def close(self) -> None:
        """Stops the flusher (letting an upload under way finish, so no line is written
        twice), then writes what is left (one attempt)."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if not await self.flush():
            log.error("data collection: %d lines lost at shutdown", len(self.buffer))
        self._log_dropped()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "buffered": len(self.buffer),
            "bufferedBytes": self.buffer.nbytes,
            "dropped": self.buffer.dropped,
            "writtenLines": self.stats.written_lines,
            "writtenFiles": self.stats.written_files,
            "failedUploads": self.stats.failed_uploads,
            "lastError": self.stats.last_error,
        }


# --- bodies ------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def is_json_type(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or mime.endswith("+json")


def _decode(body: bytes, encoding: str, cap: int) -> bytes | None:
    """The body without its Content-Encoding (gzip/deflate); None when it inflates over
    the cap; the raw bytes for encodings it does not know or cannot decode."""
    encoding = encoding.strip().lower()
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return body
    try:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header
        data = inflater.decompress(body, cap + 1)
    except zlib.error:
        if encoding != "deflate":
            return body
        try:  # "deflate" is sometimes sent raw, without the zlib header
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            data = inflater.decompress(body, cap + 1)
        except zlib.error:
            return body
    if len(data) > cap or inflater.unconsumed_tail:
        return None
    return data


def capture_body(body: bytes, content_type: str, content_encoding: str, cap: int) -> Any:
    """How a body is recorded: the JSON value for a JSON body that parses, else
    `{"base64": ...}`; None for an empty body or one over `cap` bytes."""
    if not body or len(body) > cap:
        return None
    data = _decode(body, content_encoding, cap)
    if data is None:
        return None
    if is_json_type(content_type):
        try:
            return json.loads(data, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError):
            pass
    return {"base64": base64.b64encode(data).decode("ascii")}


def _forward_headers(headers: CIMultiDictProxy[str], skip: frozenset[str]) -> CIMultiDict[str]:
    """The headers minus hop-by-hop ones (and those the Connection header names)."""
    named = {
        token.strip().lower()
        for value in headers.getall(hdrs.CONNECTION, ())
        for token in value.split(",")
    }
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lowered = name.lower()
        if lowered not in skip and lowered not in named:
            out.add(name, value)
    return out


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- the proxy ---------------------------------------------------------------------------

OPTIONS_KEY = web.AppKey("inferops_agent_options", AgentOptions)
COLLECTOR_KEY = web.AppKey("inferops_agent_collector", Collector)
SESSION_KEY = web.AppKey("inferops_agent_session", aiohttp.ClientSession)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _upstream_url(base: str, raw_path: str) -> URL:
    return URL(base.rstrip("/") + raw_path, encoded=True)


async def _health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[COLLECTOR_KEY].snapshot())


async def _proxy(request: web.Request) -> web.StreamResponse:
    options = request.app[OPTIONS_KEY]
    if request.content_length is not None and request.content_length > options.max_body_bytes:
        return _error(413, f"request body larger than {options.max_body_bytes} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"request body larger than {options.max_body_bytes} bytes")
    # Kubelet probes (through to the model's own health path) are traffic, not data.
    probe = request.headers.get(hdrs.USER_AGENT, "").startswith(PROBE_USER_AGENT)
    sampled = not probe and random.random() < options.sample_ratio
    started = _utc_now()
    clock = time.perf_counter()
    session = request.app[SESSION_KEY]
    try:
        async with session.request(
            request.method,
            _upstream_url(options.upstream, request.raw_path),
            headers=_forward_headers(request.headers, _REQUEST_SKIP),
            data=body if body else None,
            skip_auto_headers=_NO_AUTO_HEADERS,
            allow_redirects=False,
        ) as upstream:
            answer = await upstream.read()
            status, reason = upstream.status, upstream.reason
            headers = _forward_headers(upstream.headers, HOP_BY_HOP)
    except TimeoutError:
        return _error(504, f"the model did not answer within {options.timeout_seconds:g} s")
    except aiohttp.ClientError as exc:
        log.warning("model at %s unreachable: %s", options.upstream, exc)
        return _error(502, f"the model at {options.upstream} is unreachable: {exc}")
    latency_ms = (time.perf_counter() - clock) * 1000
    if request.method != hdrs.METH_HEAD:
        headers.popall(hdrs.CONTENT_LENGTH, None)  # the body is whole; the server counts it
    response = web.Response(status=status, reason=reason, headers=headers, body=answer)
    if sampled:
        _record(
            request,
            body=body,
            status=status,
            headers=headers,
            answer=answer,
            started=started,
            latency_ms=latency_ms,
        )
    return response


def _record(
    request: web.Request,
    *,
    body: bytes,
    status: int,
    headers: CIMultiDict[str],
    answer: bytes,
    started: datetime,
    latency_ms: float,
) -> None:
    options = request.app[OPTIONS_KEY]
    cap = options.max_capture_bytes
    entry = {
        "time": rfc3339(started),
        "method": request.method,
        "path": request.path,
        "query": request.query_string,
        "request": capture_body(
            body,
            request.headers.get(hdrs.CONTENT_TYPE, ""),
            request.headers.get(hdrs.CONTENT_ENCODING, ""),
            cap,
        ),
        "status": status,
        "response": capture_body(
            answer, headers.get(hdrs.CONTENT_TYPE, ""), headers.get(hdrs.CONTENT_ENCODING, ""), cap
        ),
        "latencyMs": round(latency_ms, 3),
        "service": options.service,
        "version": options.version,
        "pod": options.pod,
    }
    try:
        request.app[COLLECTOR_KEY].record(entry)
    except (TypeError, ValueError, RecursionError) as exc:  # never fail a request over a record
        log.warning("cannot record %s %s: %s", request.method, request.path, exc)


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException:
        raise
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except Exception:  # a bug in the agent: answer 502 without a traceback, log it
        log.exception("proxying %s %s failed", request.method, request.path)
        return _error(502, "the data collection agent failed to proxy the request")
    return response


def build_collector(options: AgentOptions) -> Collector:
    """The collector writing to options.output (StorageError for a bad location)."""
    output = parse_location(options.output)
    if output.scheme == "https":
        raise StorageError(f"{options.output}: cannot write to an https:// location")
    return Collector(
        Storage(options.endpoint, options.region, timeout=10.0),
        output,
        options.service,
        options.version,
        options.pod,
        flush_seconds=options.flush_seconds,
        flush_lines=options.flush_lines,
        max_buffer_lines=options.max_buffer_lines,
        max_buffer_bytes=options.max_buffer_bytes,
    )


def build_app(options: AgentOptions) -> web.Application:
    """The agent's aiohttp application (StorageError when options.output is not writable
    by scheme). The collector is `app[COLLECTOR_KEY]`; it starts with the app and flushes
    when the app is cleaned up (after in-flight requests have finished)."""
    collector = build_collector(options)
    app = web.Application(client_max_size=options.max_body_bytes, middlewares=[_errors])
    app[OPTIONS_KEY] = options
    app[COLLECTOR_KEY] = collector

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=options.timeout_seconds, connect=10),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # never share one caller's cookies
            trust_env=False,
        )
        app[SESSION_KEY] = session
        collector.start()
        try:
            yield
        finally:
            await session.close()
            await collector.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get(HEALTH_PATH, _health)
    app.router.add_get(STATS_PATH, _stats)
    app.router.add_route("*", "/{tail:.*}", _proxy)
    return app


# --- the command -------------------------------------------------------------------------


def cmd_agent(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    options = options_from_args(args)
    try:
        app = build_app(options)
    except StorageError as exc:
        print(f"inferops agent: {exc}", file=sys.stderr)
        return 2
    log.info(
        "data collection agent on %s:%d -> %s, sample ratio %g, writing to %s",
        options.host,
        options.port,
        options.upstream,
        options.sample_ratio,
        options.output,
    )
    # SIGTERM/SIGINT: stop listening, let in-flight requests finish, flush, return (exit 0).
    web.run_app(
        app,
        host=options.host,
        port=options.port,
        access_log=None,
        print=None,
        shutdown_timeout=10.0,
    )
    return 0


def add_agent_command(subparsers: Any) -> None:
    """Registers `agent` on the `inferops` subparsers (its flags: inferops.contract.agent)."""
    agent = subparsers.add_parser(
        COMMAND, help="data collection proxy: forwards to the model, records sampled pairs"
    )
    add_agent_arguments(agent)
    agent.set_defaults(func=cmd_agent)
