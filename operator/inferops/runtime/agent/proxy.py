"""The reverse proxy: the aiohttp application between the caller and the model.

Every request goes to the model over one keep-alive client session and the model's answer
comes back unchanged (hop-by-hop headers aside); a sampled fraction of the exchanges is
handed to the collector as one record. The agent answers only its own health and stats
paths; everything else, the model's own health path included, is the model's.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from inferops.contract.agent import HEALTH_PATH, STATS_PATH, UPLOADS_HEALTH_PATH, AgentOptions
from inferops.runtime.agent.capture import BodyTap, capture_body, rfc3339
from inferops.runtime.agent.collector import Collector, build_collector, utc_now
from inferops.runtime.agent.redact import Redaction

log = logging.getLogger(__name__)

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

OPTIONS_KEY = web.AppKey("inferops_agent_options", AgentOptions)
COLLECTOR_KEY = web.AppKey("inferops_agent_collector", Collector)
SESSION_KEY = web.AppKey("inferops_agent_session", aiohttp.ClientSession)
REDACTION_KEY = web.AppKey("inferops_agent_redaction", Redaction)


def forward_headers(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], skip: frozenset[str]
) -> CIMultiDict[str]:
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


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _upstream_url(base: str, raw_path: str) -> URL:
    return URL(base.rstrip("/") + raw_path, encoded=True)


async def _health(_: web.Request) -> web.Response:
    """Serving health, the readiness probe: the proxy answers, so the pod may take traffic.
    Storage trouble never fails it (that would take every pod writing to a broken bucket
    out of the Service); `_uploads_health` reports it instead."""
    return web.json_response({"status": "ok"})


async def _uploads_health(request: web.Request) -> web.Response:
    """Collection health: 503 once uploads have failed UPLOADS_FAILING_AFTER times in a row
    (each retry a flush period later), 200 again after one succeeds."""
    collector = request.app[COLLECTOR_KEY]
    stats = collector.snapshot()
    body = {
        "status": "failing" if collector.uploads_failing else "ok",
        "consecutiveFailedUploads": stats["consecutiveFailedUploads"],
        "dropped": stats["dropped"],
        "lastError": stats["lastError"],
    }
    return web.json_response(body, status=503 if collector.uploads_failing else 200)


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[COLLECTOR_KEY].snapshot())


class _BodyTooLargeError(Exception):
    """The caller's body ran past --max-body-bytes while streaming to the model."""


class _RequestBody:
    """The caller's body for the upstream request, chunk by chunk as it arrives: tapped for
    the record and counted against the limit. Past the limit it raises, which makes the
    client abort the upstream request mid-body (the model never sees a complete request)."""

    def __init__(self, request: web.Request, limit: int, tap: BodyTap) -> None:
        self._content = request.content
        self._limit = limit
        self.tap = tap
        self.too_large = False

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._content.iter_any():
            if self.tap.size + len(chunk) > self._limit:
                self.too_large = True
                raise _BodyTooLargeError
            self.tap.feed(chunk)
            yield chunk


@dataclass
class _Exchange:
    """One proxied request as the record will describe it."""

    sent: BodyTap
    answered: BodyTap
    started: datetime = field(default_factory=utc_now)
    clock: float = field(default_factory=time.perf_counter)


def _too_large(limit: int) -> web.Response:
    return _error(413, f"request body larger than {limit} bytes")


async def _proxy(request: web.Request) -> web.StreamResponse:
    options = request.app[OPTIONS_KEY]
    limit = options.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return _too_large(limit)
    # Kubelet probes (through to the model's own health path) are traffic, not data.
    probe = request.headers.get(hdrs.USER_AGENT, "").startswith(PROBE_USER_AGENT)
    sampled = not probe and random.random() < options.sample_ratio
    cap = options.max_capture_bytes if sampled else 0  # an unsampled body is only counted
    exchange = _Exchange(BodyTap(cap), BodyTap(cap))
    body = _RequestBody(request, limit, exchange.sent) if request.body_exists else None
    headers = forward_headers(request.headers, _REQUEST_SKIP)
    if body is not None and request.content_length is not None:
        headers[hdrs.CONTENT_LENGTH] = str(request.content_length)  # else sent chunked
    try:
        upstream = await request.app[SESSION_KEY].request(
            request.method,
            _upstream_url(options.upstream, request.raw_path),
            headers=headers,
            data=None if body is None else body.chunks(),
            skip_auto_headers=_NO_AUTO_HEADERS,
            allow_redirects=False,
        )
    except TimeoutError:
        return _error(504, f"the model did not answer within {options.timeout_seconds:g} s")
    except aiohttp.ClientError as exc:
        if body is not None and body.too_large:
            return _too_large(limit)
        log.warning("model at %s unreachable: %s", options.upstream, exc)
        return _error(502, f"the model at {options.upstream} is unreachable: {exc}")
    try:
        response, complete = await _relay(request, upstream, exchange.answered)
    finally:
        upstream.release()  # back to the pool when the answer was read whole, else closed
    if sampled and complete:
        _record(request, exchange, response)
    return response


async def _relay(
    request: web.Request, upstream: aiohttp.ClientResponse, tap: BodyTap
) -> tuple[web.StreamResponse, bool]:
    """Streams the model's answer to the caller as it comes (chunked stays chunked, a
    Content-Length is kept); True when the answer went through whole. When the model breaks
    off mid-answer the caller's connection is closed, so the caller sees an incomplete
    answer instead of a clean end."""
    response = web.StreamResponse(
        status=upstream.status,
        reason=upstream.reason,
        headers=forward_headers(upstream.headers, HOP_BY_HOP),
    )
    await response.prepare(request)
    if request.method == hdrs.METH_HEAD:
        return response, True
    while True:
        try:
            chunk = await upstream.content.readany()
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            log.warning(
                "the model broke off its answer to %s %s: %r", request.method, request.path, exc
            )
            upstream.close()
            if request.transport is not None:
                request.transport.close()
            return response, False
        if not chunk:
            return response, True
        tap.feed(chunk)
        try:
            await response.write(chunk)
        except ConnectionError:  # the caller went away: nothing left to answer
            upstream.close()
            return response, False


def _record(request: web.Request, exchange: _Exchange, response: web.StreamResponse) -> None:
    options = request.app[OPTIONS_KEY]
    redaction = request.app[REDACTION_KEY]
    cap = options.max_capture_bytes
    sent = capture_body(
        exchange.sent.kept,
        request.headers.get(hdrs.CONTENT_TYPE, ""),
        request.headers.get(hdrs.CONTENT_ENCODING, ""),
        cap,
        size=exchange.sent.size,
    )
    answered = capture_body(
        exchange.answered.kept,
        response.headers.get(hdrs.CONTENT_TYPE, ""),
        response.headers.get(hdrs.CONTENT_ENCODING, ""),
        cap,
        size=exchange.answered.size,
    )
    entry = {
        "time": rfc3339(exchange.started),
        "method": request.method,
        "path": request.path,
        "query": redaction.query(request.query_string),
        "request": sent.value,
        "requestBytes": exchange.sent.size,
        "requestTruncated": sent.truncated,
        "requestHeaders": redaction.headers_of(forward_headers(request.headers, _REQUEST_SKIP)),
        "status": response.status,
        "response": answered.value,
        "responseBytes": exchange.answered.size,
        "responseTruncated": answered.truncated,
        "responseHeaders": redaction.headers_of(response.headers),
        "latencyMs": round((time.perf_counter() - exchange.clock) * 1000, 3),
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


def build_app(options: AgentOptions) -> web.Application:
    """The agent's aiohttp application (StorageError when options.output is not writable
    by scheme). The collector is `app[COLLECTOR_KEY]`; it starts with the app and flushes
    when the app is cleaned up (after in-flight requests have finished)."""
    collector = build_collector(options)
    app = web.Application(
        client_max_size=options.max_body_bytes,
        middlewares=[_errors],
        # Bodies go to the model as sent: a gzip body stays gzip (with its Content-Length),
        # and a decompression bomb is never inflated here (the record inflates up to the
        # capture cap only).
        handler_args={"auto_decompress": False},
    )
    app[OPTIONS_KEY] = options
    app[COLLECTOR_KEY] = collector
    app[REDACTION_KEY] = Redaction.of(options)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
            # No total: a streamed answer may last; the model must start answering, and
            # then keep sending, within the timeout.
            timeout=aiohttp.ClientTimeout(
                total=None, connect=10, sock_read=options.timeout_seconds
            ),
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
    app.router.add_get(UPLOADS_HEALTH_PATH, _uploads_health)
    app.router.add_get(STATS_PATH, _stats)
    app.router.add_route("*", "/{tail:.*}", _proxy)
    return app
