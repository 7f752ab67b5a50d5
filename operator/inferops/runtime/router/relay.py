"""The shadow relay: nginx hands it copies of requests for shadow versions, and, with data
collection, the sampled requests themselves so that production's and the shadows' answers
can be written side by side.

Mirror (`take_copy`, from `intake.MirrorIntake`): nginx has had its 204 and the copy goes
to the shadow in the background, so neither the client nor nginx ever waits for a shadow.
Pairing (`PRODUCTION_HEADER`): the request goes to production, whose answer streams back
to the client as it comes; the shadows get the same request at the same moment; once all
have answered, the comparison is counted and, sampled, written as one JSON line per shadow.
Copies waiting for shadows are bounded (`max_shadow_in_flight`); beyond that they are
dropped and counted. The relay only ever connects to the addresses of its configuration.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from inferops.contract.router import (
    ORIGINAL_URI_HEADER,
    PAIRED_SHADOWS_HEADER,
    PRODUCTION_HEADER,
    SHADOW_HEADER,
    RouterAgentConfig,
    Target,
)
from inferops.runtime.agent import proxy as agent_proxy
from inferops.runtime.agent.capture import BodyTap, capture_body, rfc3339
from inferops.runtime.agent.collector import Collector, utc_now
from inferops.runtime.agent.redact import Redaction
from inferops.runtime.router.intake import Copy
from inferops.runtime.router.metrics import RouterMetrics

log = logging.getLogger(__name__)

_INTERNAL = frozenset(
    h.lower()
    for h in (SHADOW_HEADER, PRODUCTION_HEADER, PAIRED_SHADOWS_HEADER, ORIGINAL_URI_HEADER)
)
_SKIP = agent_proxy.HOP_BY_HOP | _INTERNAL | {"host", "content-length", "expect"}
_NO_AUTO_HEADERS = (hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.USER_AGENT, hdrs.CONTENT_TYPE)


def forward_headers(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """The client's headers for a version: no hop-by-hop ones, none of the router's own."""
    return agent_proxy.forward_headers(headers, _SKIP)


def version_url(address: str, uri: str) -> URL:
    """The version's URL for a request URI: always on the configured address (a URI such
    as `//host/x` stays a path)."""
    path, _, query = uri.partition("?")
    return URL.build(scheme="http", authority=address, path=path, query_string=query, encoded=True)


@dataclass
class Answer:
    """What one version answered (or why it did not)."""

    version: str
    status: int | None
    seconds: float
    tap: BodyTap
    digest: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Sent:
    """The request as the relay sends it on."""

    method: str
    uri: str
    headers: CIMultiDict[str]
    body: bytes
    started: datetime


class Relay:
    """The relay's state: targets, one client session, tasks waiting for shadows."""

    def __init__(
        self,
        config: RouterAgentConfig,
        metrics: RouterMetrics,
        collectors: Mapping[str, Collector] | None = None,  # by shadow label
        redaction: Redaction | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.collectors = dict(collectors or {})
        self.redaction = redaction or Redaction(frozenset(), frozenset())
        self.targets = {t.upstream: t for t in config.targets}
        self.tasks: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession | None = None

    def shadow(self, upstream: str) -> Target | None:
        target = self.targets.get(upstream)
        return target if target is not None and target.shadow_percent is not None else None

    def take_copy(self, copy: Copy) -> bool:
        """A copy from the mirror intake: relayed to its shadow in the background (dropped
        and counted when too many wait); False when it names no shadow of this router."""
        target = self.shadow(copy.headers.get(SHADOW_HEADER, ""))
        uri = copy.headers.get(ORIGINAL_URI_HEADER, "")
        if target is None or not uri.startswith("/"):
            return False
        if self.busy():
            self.metrics.shadow_dropped.labels(target.label, "busy").inc()
            return True
        sent = Sent(copy.method, uri, forward_headers(copy.headers), copy.body, utc_now())
        self.spawn(self.mirror(target, sent))
        return True

    def production(self, upstream: str) -> Target | None:
        target = self.targets.get(upstream)
        return target if target is not None and target.shadow_percent is None else None

    def busy(self) -> bool:
        return len(self.tasks) >= self.config.max_shadow_in_flight

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=5, sock_read=self.config.shadow_timeout_seconds
            ),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # never through a proxy from the environment
        )
        for collector in self.collectors.values():
            collector.start()

    async def close(self) -> None:
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=5)
        for task in set(self.tasks):
            task.cancel()
        if self.session is not None:
            await self.session.close()
        for collector in self.collectors.values():
            await collector.close()

    def send(self, target: Target, sent: Sent) -> Any:
        """The request to a version (an aiohttp request context: await it or use it in
        `async with`)."""
        assert self.session is not None
        return self.session.request(
            sent.method,
            version_url(target.address, sent.uri),
            headers=sent.headers,
            data=sent.body or None,
            skip_auto_headers=_NO_AUTO_HEADERS,
            allow_redirects=False,
        )

    async def call(self, target: Target, sent: Sent) -> Answer:
        """Sends the request to a version and reads its whole answer (bounded)."""
        assert self.session is not None
        cap = self.config.max_capture_bytes if self.config.pairing else 0
        tap = BodyTap(cap)
        digest = hashlib.sha256()
        started = time.perf_counter()
        try:
            async with (
                asyncio.timeout(self.config.shadow_timeout_seconds),
                self.send(target, sent) as response,
            ):
                async for chunk in response.content.iter_any():
                    if tap.size + len(chunk) > self.config.max_body_bytes:
                        raise _TooLargeError
                    tap.feed(chunk)
                    digest.update(chunk)
                return Answer(
                    target.label,
                    response.status,
                    time.perf_counter() - started,
                    tap,
                    digest.hexdigest(),
                    dict(response.headers),
                )
        except TimeoutError:
            why = f"no answer within {self.config.shadow_timeout_seconds:g} s"
        except _TooLargeError:
            why = f"answer larger than {self.config.max_body_bytes} bytes"
        except aiohttp.ClientError as exc:
            why = f"unreachable: {type(exc).__name__}"
        return Answer(target.label, None, time.perf_counter() - started, tap, error=why)

    async def mirror(self, target: Target, sent: Sent) -> None:
        answer = await self.call(target, sent)
        self.metrics.observe_shadow(target.label, answer.status, answer.seconds)

    async def compare(
        self, sent: Sent, production: Answer, shadows: list[asyncio.Task[Answer]]
    ) -> None:
        """Waits for the shadows' answers, counts agreement, writes sampled pairs. Only
        answers are compared: a shadow that gave none (unreachable, too slow) counts as
        its error (code "error"), not as a disagreement."""
        for task in shadows:
            shadow = await task
            self.metrics.observe_shadow(shadow.version, shadow.status, shadow.seconds)
            same_status = shadow.status == production.status
            same_body = _same_body(production, shadow)
            if shadow.status is not None and production.status is not None:
                self.metrics.comparisons.labels(
                    shadow.version,
                    production.version,
                    "same" if same_status else "different",
                    "same" if same_body else "different",
                ).inc()
            pairing = self.config.pairing
            collector = self.collectors.get(shadow.version)
            if collector is None or pairing is None or random.random() >= pairing.sample_ratio:
                continue
            record = self.pair_record(sent, production, shadow, same_status, same_body)
            try:
                collector.record(record)
            except (TypeError, ValueError, RecursionError) as exc:
                log.warning("cannot record the pair of %s %s: %s", sent.method, sent.uri, exc)

    def pair_record(
        self, sent: Sent, production: Answer, shadow: Answer, same_status: bool, same_body: bool
    ) -> dict[str, Any]:
        cap = self.config.max_capture_bytes
        path, _, query = sent.uri.partition("?")
        request = capture_body(
            sent.body,
            sent.headers.get(hdrs.CONTENT_TYPE, ""),
            sent.headers.get(hdrs.CONTENT_ENCODING, ""),
            cap,
        )
        return {
            "time": rfc3339(sent.started),
            "service": self.config.service,
            "requestId": sent.headers.get("X-Request-Id", ""),
            "request": {
                "method": sent.method,
                "path": path,
                "query": self.redaction.query(query),
                "headers": self.redaction.headers_of(sent.headers),
                "body": request.value,
                "bytes": len(sent.body),
                "truncated": request.truncated,
            },
            "production": self._answer_record(production),
            "shadow": self._answer_record(shadow),
            "sameStatus": same_status,
            "sameBody": same_body,
        }

    def _answer_record(self, answer: Answer) -> dict[str, Any]:
        headers: CIMultiDict[str] = CIMultiDict(answer.headers)
        body = capture_body(
            answer.tap.kept,
            headers.get(hdrs.CONTENT_TYPE, ""),
            headers.get(hdrs.CONTENT_ENCODING, ""),
            self.config.max_capture_bytes,
            size=answer.tap.size,
        )
        out: dict[str, Any] = {
            "version": answer.version,
            "status": answer.status,
            "latencyMs": round(answer.seconds * 1000, 3),
            "headers": self.redaction.headers_of(headers),
            "body": body.value,
            "bytes": answer.tap.size,
            "truncated": body.truncated,
        }
        if answer.error is not None:
            out["error"] = answer.error
        return out


class _TooLargeError(Exception):
    pass


RELAY_KEY = web.AppKey("inferops_router_relay", Relay)


def _same_body(production: Answer, shadow: Answer) -> bool:
    """Byte for byte, or, for JSON answers read whole, the same JSON value (spacing and
    key order aside)."""
    if production.status is None or shadow.status is None:
        return False
    if production.digest == shadow.digest:
        return True
    values: list[object] = []
    for answer in (production, shadow):
        kept = answer.tap.kept
        if answer.tap.size != len(kept):
            return False
        content_type = CIMultiDict(answer.headers).get(hdrs.CONTENT_TYPE, "")
        captured = capture_body(kept, content_type, "", len(kept) + 1)
        if captured.truncated:
            return False
        values.append(captured.value)
    return bool(values[0] == values[1])


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _sent(request: web.Request, uri: str) -> Sent:
    return Sent(
        request.method, uri, forward_headers(request.headers), await request.read(), utc_now()
    )


async def _pair(request: web.Request, relay: Relay, upstream: str) -> web.StreamResponse:
    production = relay.production(upstream)
    if production is None:
        return _error(400, "not a version of this router")
    sent = await _sent(request, request.raw_path)
    shadows: list[asyncio.Task[Answer]] = []
    names = dict.fromkeys(request.headers.get(PAIRED_SHADOWS_HEADER, "").split())
    for name in names:
        target = relay.shadow(name)
        if target is None:
            continue
        if relay.busy():
            relay.metrics.shadow_dropped.labels(target.label, "busy").inc()
            continue
        shadows.append(asyncio.get_running_loop().create_task(relay.call(target, sent)))
    answer, response = await _stream_production(request, relay, production, sent)
    if shadows:
        relay.spawn(relay.compare(sent, answer, shadows))
    return response


async def _stream_production(
    request: web.Request, relay: Relay, target: Target, sent: Sent
) -> tuple[Answer, web.StreamResponse]:
    """Production's answer to the client as it comes, kept (up to the capture bound) and
    hashed for the comparison."""
    assert relay.session is not None
    cap = relay.config.max_capture_bytes if relay.config.pairing else 0
    tap = BodyTap(cap)
    digest = hashlib.sha256()
    started = time.perf_counter()
    try:
        upstream = await relay.send(target, sent)
    except (TimeoutError, aiohttp.ClientError) as exc:
        why = f"the version {target.label} is unreachable: {type(exc).__name__}"
        answer = Answer(target.label, None, time.perf_counter() - started, tap, error=why)
        return answer, _error(502, why)
    try:
        response = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=forward_headers(upstream.headers),
        )
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            tap.feed(chunk)
            digest.update(chunk)
            await response.write(chunk)
        await response.write_eof()
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        upstream.close()
        if request.transport is not None:
            request.transport.close()
        error = f"the answer broke off: {type(exc).__name__}"
        return Answer(target.label, None, time.perf_counter() - started, tap, error=error), response
    finally:
        upstream.release()
    answer = Answer(
        target.label,
        upstream.status,
        time.perf_counter() - started,
        tap,
        digest.hexdigest(),
        dict(upstream.headers),
    )
    return answer, response


async def _handle(request: web.Request) -> web.StreamResponse:
    relay = request.app[RELAY_KEY]
    production = request.headers.get(PRODUCTION_HEADER)
    if production:
        return await _pair(request, relay, production)
    return _error(400, "the router relay answers nginx only")


def build_relay_app(relay: Relay) -> web.Application:
    app = web.Application(
        client_max_size=relay.config.max_body_bytes,
        handler_args={"auto_decompress": False},
    )
    app[RELAY_KEY] = relay
    app.router.add_route("*", "/{tail:.*}", _handle)
    return app
