"""HTTP to the model: bounded concurrency, keep-alive, a timeout, retries with backoff.

Retried: connection errors (refused, reset, closed keep-alive connections), HTTP 5xx and
429, with exponential backoff and jitter (honouring Retry-After). Not retried: other 4xx
(the request itself is wrong), a request that timed out (the model got it and is slow;
retrying would multiply the wait and the load), a redirect (not followed: the model is
the sidecar at a fixed address, and an answer elsewhere is not its answer) and an answer
over `max_response_bytes` (read in chunks up to the limit, never whole).
"""

from __future__ import annotations

import asyncio
import mimetypes
import random
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, NamedTuple

import aiohttp
import yarl

from inferops.contract.batch_worker import WorkerConfig

JSON_TYPE = "application/json"
_JSON_HEADERS = {"Content-Type": JSON_TYPE}
_SNIPPET = 300
_ERROR_BYTES = 64 * 1024  # of a failed answer's body: enough for its snippet in the message
_CHUNK = 256 * 1024
_TYPES: dict[str, str] = {}
_TYPES_KEPT = 64


class Reply(NamedTuple):
    """A successful answer: its body and the Content-Type header the model gave it.

    A tuple because one is made per request, and a tuple is the cheapest to make."""

    body: bytes
    content_type: str


class RequestError(Exception):
    """A request that got no successful answer; the message says why, for the manifest."""


def _snippet(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."


def _too_large(limit: int, size: int | None) -> str:
    stated = f" ({size} bytes)" if size is not None else ""
    return f"the model's answer is larger than the {limit}-byte limit{stated} (maxResponseBytes)"


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to limit bytes of a body, read in chunks (fewer only at its end)."""
    body = bytearray()
    while len(body) < limit:
        chunk = await response.content.read(min(limit - len(body), _CHUNK))
        if not chunk:
            break
        body += chunk
    return bytes(body)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None


class ModelClient:
    """POSTs to `model_url + request_path`; at most `concurrency` requests in flight."""

    def __init__(self, config: WorkerConfig) -> None:
        self.url = config.model_url.rstrip("/") + config.request_path
        self._url = yarl.URL(self.url)  # parsed once, not per request
        self.concurrency = config.concurrency
        self.timeout = config.request_timeout_seconds
        self.retries = config.retries
        self.backoff = config.backoff_seconds
        self.backoff_max = config.backoff_max_seconds
        self.max_response_bytes = config.max_response_bytes
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ModelClient:
        # The connector's limit is what bounds the requests in flight: every request holds
        # one connection. (A semaphore of our own on top cost 4 µs per request, 3 % of all.)
        connector = aiohttp.TCPConnector(
            limit=self.concurrency, limit_per_host=self.concurrency, keepalive_timeout=30
        )
        timeout = aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(self.timeout, 10))
        # No cookie jar: a batch has no session to keep, and filtering cookies costs
        # time on every request.
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
        )
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    def post_json(self, body: bytes) -> Coroutine[Any, Any, Reply]:
        """The 2xx answer to a JSON body; RequestError otherwise.

        Not `async` itself: awaiting the request directly spares a coroutine layer that
        every resumption of every request would go through (it runs once per CSV row)."""
        return self._post(body, _JSON_HEADERS, None)

    async def post_file(self, field: str, filename: str, content: bytes) -> Reply:
        """The file as multipart/form-data under `field`, named `filename`."""
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"

        def form() -> aiohttp.FormData:
            # A FormData is consumed by one request, so every attempt builds its own.
            data = aiohttp.FormData()
            data.add_field(field, content, filename=filename, content_type=content_type)
            return data

        return await self._post(None, None, form)

    async def _body(self, response: aiohttp.ClientResponse) -> bytes:
        """A successful answer's body; RequestError (not retried) when it is larger than
        max_response_bytes, which is never read whole beyond the limit."""
        limit = self.max_response_bytes
        length = response.content_length
        if length is not None and length > limit:
            raise RequestError(_too_large(limit, length))
        if length is not None and not response.headers.get("Content-Encoding"):
            return await response.read()  # the common case: a stated size within the limit
        # No size, or a compressed one that says nothing about the size once inflated.
        body = await _read_at_most(response, limit + 1)
        if len(body) > limit:
            raise RequestError(_too_large(limit, None))
        return body

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter spreads retries apart

    async def _post(
        self,
        body: bytes | None,
        headers: dict[str, str] | None,
        form: Callable[[], aiohttp.FormData] | None,
    ) -> Reply:
        """One request (a body, or a form built per attempt), retried as the module says.
        The success path does no more than a bare aiohttp post: it runs once per row."""
        session = self._session
        assert session is not None, "use ModelClient as an async context manager"
        problem = ""
        for attempt in range(self.retries + 1):
            retry_after = None
            data: Any = body if form is None else form()
            try:
                async with session.post(
                    self._url, data=data, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
                    if 200 <= status < 300:
                        reply = await self._body(response)
                        # The raw header (aiohttp would parse it anew for every response),
                        # one string per distinct value: rows answered before their turn
                        # keep their Reply until written.
                        kind = response.headers.get("Content-Type", "")
                        if len(_TYPES) < _TYPES_KEPT:
                            kind = _TYPES.setdefault(kind, kind)
                        return Reply(reply, kind)
                    reply = await _read_at_most(response, _ERROR_BYTES)
                    retry_after = _retry_after(response.headers.get("Retry-After"))
            except aiohttp.ConnectionTimeoutError:
                problem = f"cannot connect to the model at {self.url}: timed out"
            except TimeoutError:
                raise RequestError(f"the model did not answer within {self.timeout:g} s") from None
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                problem = f"cannot reach the model at {self.url}: {exc or type(exc).__name__}"
            else:
                problem = f"the model answered HTTP {status}: {_snippet(reply)}"
                if 300 <= status < 400:  # a model that redirects did not answer
                    raise RequestError(f"{problem} (redirects are not followed)")
                if status < 500 and status != 429:
                    raise RequestError(problem)
            if attempt < self.retries:
                await asyncio.sleep(self._delay(attempt, retry_after))
        attempts = self.retries + 1
        raise RequestError(f"{problem} (after {attempts} attempt{'s' * (attempts > 1)})")
