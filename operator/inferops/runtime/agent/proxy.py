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
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from inferops.contract.agent import HEALTH_PATH, STATS_PATH, AgentOptions
from inferops.runtime.agent.capture import capture_body, rfc3339
from inferops.runtime.agent.collector import Collector, build_collector, utc_now

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
    started = utc_now()
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
