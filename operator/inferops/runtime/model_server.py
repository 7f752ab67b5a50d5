"""`inferops model-server`: a small reference runtime honouring the application contract.

It serves `GET /health` and every API of the model's `config.json`: JSON input
(`{"data": {"req_data": [...]}}`, one prediction per item) or file input (multipart/form-data
under the schema's file property). Malformed requests get 400 with a message, bodies over
the limit 413 (compressed ones too, counted after decompression), content codings other than
gzip and deflate 415; never 500, which clients such as the batch worker retry. Request
bodies are read with the untrusted JSON reader (`inferops.contract.untrusted`: depth and
number-length bounds), and parsing, prediction and encoding the answer run in a thread pool,
so one large request never holds `/health` or other requests.

An API whose request Content-type carries `transport=websocket` (see
`inferops.contract.request_schema.is_websocket_api`) is a streaming prediction over WebSocket:

- the client sends text messages holding the POST body, `{"data": {"req_data": [...]}}`;
- for each, in order, the server answers one message per item, `{"index": i, **result}`
  (the result is the POST answer's `resp_data[i]`), then `{"done": true, "count": n}`; or a
  single `{"error": "..."}` when the message is not valid JSON or not the model's shape.
  Either way the connection stays open for the next message;
- a binary frame closes the connection with 1003 (unsupported data), a message over the
  size limit with 1009 (message too big), invalid UTF-8 with 1007, other protocol errors
  with 1002;
- the server pings every `heartbeat` seconds, so idle proxies keep the connection and
  dead peers are dropped; a plain GET without the upgrade gets 426.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, WSCloseCode, WSMsgType, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from inferops.contract.request_schema import (
    file_property,
    is_websocket_api,
    request_schema,
    websocket_api_problem,
)
from inferops.contract.untrusted import UntrustedInputError, load_json
from inferops.runtime.models import (
    BadInputError,
    JsonObject,
    Model,
    ModelError,
    load_model,
    read_json,
)

log = logging.getLogger(__name__)
DEFAULT_MAX_BODY = 16 * 1024 * 1024
DEFAULT_MAX_MESSAGE = 1024 * 1024  # largest WebSocket message (after decompression)
DEFAULT_HEARTBEAT = 30.0  # seconds between WebSocket pings
BINARY_REFUSED = b"binary frames are not supported: send JSON text messages"
LINGER_SECONDS = 2.0  # after a protocol error, how long the peer may go on sending
LINGER_POLL = 0.05
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response(_error_value(message), status=status)


def _error_value(message: str) -> JsonObject:
    # One line: some messages quote aiohttp's, which span lines (clients log them whole).
    return {"error": " ".join(message.split())}


class RefusedRequestError(Exception):
    """A request answered with a 4xx status and a message (never a 500)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# zlib's wbits per content coding (RFC 9110 section 8.4.1): gzip framing, zlib framing.
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decode_content(raw: bytes, coding: str, max_body: int) -> bytes:
    """The body without its Content-Encoding, at most max_body bytes once decompressed.

    The server decompresses itself (aiohttp's automatic decoding is off): a bomb stops at
    the limit with 413 whatever its ratio, corrupt data is 400 and an unknown coding 415,
    where aiohttp would answer 500 or drop the connection.
    """
    name = coding.strip().lower()
    if name in ("", "identity"):
        return raw
    wbits = _CODINGS.get(name)
    if wbits is None:
        raise RefusedRequestError(
            415, f"Content-Encoding {coding!r:.40} is not supported (gzip, deflate)"
        )
    if name == "deflate" and raw[:1] and raw[0] & 0x0F != 8:
        wbits = -zlib.MAX_WBITS  # raw deflate without the zlib header, as many clients send
    decompressor = zlib.decompressobj(wbits)
    try:
        body = decompressor.decompress(raw, max_body + 1)
    except zlib.error as exc:
        raise RefusedRequestError(400, f"request body is not valid {name} data: {exc}") from None
    if len(body) > max_body:
        raise RefusedRequestError(
            413, f"request body too large: over {max_body} bytes decompressed"
        )
    if not decompressor.eof or decompressor.unused_data:
        raise RefusedRequestError(
            400, f"request body is not valid {name} data: truncated or trailing bytes"
        )
    return body


@dataclass(frozen=True)
class Endpoint:
    method: str
    url: str
    file_field: str | None
    websocket: bool = False


def read_endpoints(directory: Path) -> list[Endpoint]:
    path = directory / "config.json"
    config = read_json(path)
    apis = config.get("apis") if isinstance(config, dict) else config
    if not isinstance(apis, list) or not apis:
        raise ModelError(f"{path}: no `apis` list")
    endpoints = []
    for api in apis:
        if not isinstance(api, dict) or not isinstance(api.get("url"), str):
            raise ModelError(f"{path}: every API needs a url")
        if is_websocket_api(api):
            problem = websocket_api_problem(api)
            if problem is not None:
                raise ModelError(f"{path}: API {api['url']}: {problem[1]}")
            endpoints.append(Endpoint("GET", api["url"], None, websocket=True))
            continue
        method = str(api.get("method", "post")).upper()
        endpoints.append(Endpoint(method, api["url"], file_property(request_schema(api))))
    return endpoints


def _parse_json(text: str, max_bytes: int) -> tuple[Any, str | None]:
    """(value, None) or (None, why the text is not acceptable JSON)."""
    try:
        return load_json(text, max_bytes=max_bytes), None
    except UntrustedInputError as exc:
        return None, f"not valid JSON: {exc}"


def answer_json(
    model: Model, raw: bytes, coding: str, charset: str | None, max_body: int
) -> tuple[int, bytes]:
    """(status, JSON body) answering a JSON request body: runs in a worker thread, so
    decompressing, parsing, predicting and encoding never block the event loop."""
    try:
        text = decode_content(raw, coding, max_body).decode(charset or "utf-8")
    except RefusedRequestError as exc:
        return exc.status, _json_bytes(_error_value(exc.message))
    # Bad bytes, an unknown charset, or a codec that is not a text encoding.
    except (UnicodeError, LookupError, ValueError):
        return 400, _json_bytes({"error": "request body is not valid JSON text"})
    body, problem = _parse_json(text, max_body)
    if problem is not None:
        return 400, _json_bytes({"error": f"request body is {problem}"})
    try:
        return 200, _json_bytes(model.predict_json(body))
    except BadInputError as exc:
        return 400, _json_bytes(_error_value(str(exc)))


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False).encode()


def _json_handler(model: Model, max_body: int) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        coding = request.headers.get(hdrs.CONTENT_ENCODING, "")
        loop = asyncio.get_running_loop()
        status, body = await loop.run_in_executor(
            None, answer_json, model, raw, coding, request.charset, max_body
        )
        return web.Response(status=status, body=body, content_type="application/json")

    return handle


async def _file_part(request: web.Request, field: str) -> tuple[str, bytes] | None:
    """(filename, content) of the form field, or None; ValueError and the other errors
    of aiohttp's multipart reader for a malformed body (see _file_handler)."""
    reader = await request.multipart()
    async for part in reader:
        if isinstance(part, BodyPartReader) and part.name == field:
            # part.read() stops at the application's client_max_size (413).
            return part.filename or "", bytes(await part.read())
    return None


def _file_handler(model: Model, field: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if not request.content_type.startswith("multipart/"):
            return _error(400, f"send the file as multipart/form-data under {field!r}")
        coding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
        if coding != "identity":  # the multipart reader streams the body: no decoding
            return _error(
                415, f"send multipart bodies without Content-Encoding (got {coding!r:.40})"
            )
        try:
            found = await _file_part(request, field)
        # What aiohttp's multipart reader raises for a body that is not what its
        # Content-Type says (no boundary, no starting boundary, bad part headers).
        except (ValueError, AssertionError, RuntimeError, TypeError, HttpProcessingError) as exc:
            return _error(400, f"malformed multipart body: {exc}")
        if found is None:
            return _error(400, f"no form field {field!r} in the request")
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(None, model.predict_file, *found)
        except BadInputError as exc:
            return _error(400, str(exc))
        return web.json_response(result)

    return handle


def stream_replies(
    model: Model, text: str, max_message: int = DEFAULT_MAX_MESSAGE
) -> list[JsonObject]:
    """The WebSocket messages answering one text message, in order (see the module doc)."""
    body, problem = _parse_json(text, 4 * max_message)  # a character is at most 4 bytes
    if problem is not None:
        return [{"error": f"message is {problem}"}]
    try:
        answer = model.predict_json(body)
    except BadInputError as exc:
        return [_error_value(str(exc))]
    items = answer.get("resp_data")
    results = items if isinstance(items, list) else [answer]
    replies: list[JsonObject] = [
        {"index": i, **(item if isinstance(item, dict) else {"result": item})}
        for i, item in enumerate(results)
    ]
    replies.append({"done": True, "count": len(results)})
    return replies


def _encoded_replies(model: Model, text: str, max_message: int) -> list[str]:
    try:
        return [json.dumps(r, allow_nan=False) for r in stream_replies(model, text, max_message)]
    except Exception:  # a bug, not a bad message: log it, keep the connection
        log.exception("prediction failed")
        return [json.dumps({"error": "internal error while predicting"})]


class _WebSocket(web.WebSocketResponse):
    """A WebSocketResponse that half-closes, not closes, after the peer's protocol error.

    aiohttp refuses an oversize message as soon as it reads the frame header: it sends the
    close frame (1009) and closes the socket while the peer is still sending the message.
    Closing a socket with unread data makes the kernel answer with a reset, which can beat
    the close frame to the client (a proxy in between may drop both). Half-closing instead
    (FIN after the close frame) while the handler lingers, reading and dropping the rest,
    delivers the close code; the handler's return closes the socket. Other closes (normal,
    heartbeat timeout) stay aiohttp's own.
    """

    def _close_transport(self) -> None:
        reader = self._reader
        transport = self._req.transport if self._req is not None else None
        if (
            reader is not None
            and reader.exception() is not None  # the peer's stream broke the protocol
            and transport is not None
            and not transport.is_closing()
            and transport.can_write_eof()
        ):
            transport.write_eof()
        else:
            super()._close_transport()


async def _linger(request: web.Request, seconds: float) -> None:
    """Reads and drops what the peer still sends until it closes, for at most `seconds`."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    if not transport.is_reading():
        transport.resume_reading()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(LINGER_POLL)


def _websocket_handler(model: Model, max_message: int, heartbeat: float) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        # aiohttp refuses a message of max_msg_size bytes or more; ours may be max_message.
        ws = _WebSocket(max_msg_size=max_message + 1, heartbeat=heartbeat)
        if not ws.can_prepare(request).ok:
            return web.json_response(
                {"error": "this API speaks WebSocket: connect with Upgrade: websocket"},
                status=426,
                headers={"Upgrade": "websocket"},
            )
        await ws.prepare(request)
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    # In a worker thread, as for POST: the loop keeps serving other clients.
                    replies = await asyncio.get_running_loop().run_in_executor(
                        None, _encoded_replies, model, message.data, max_message
                    )
                    for reply in replies:
                        await ws.send_str(reply)
                elif message.type is WSMsgType.BINARY:
                    await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=BINARY_REFUSED)
                elif message.type is WSMsgType.ERROR:  # aiohttp has closed it (1009, 1007, ...)
                    code = getattr(message.data, "code", None)
                    why = (
                        f"a message over {max_message} bytes"
                        if code == WSCloseCode.MESSAGE_TOO_BIG
                        else message.data
                    )
                    log.info("websocket closed with %s: %s", code, why)
                    await _linger(request, LINGER_SECONDS)
        except ConnectionError as exc:  # the peer went away while we were answering
            log.info("websocket peer gone: %s", exc)
        return ws

    return handle


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge as exc:
        return _error(413, f"request body too large: {exc.text}")
    except web.HTTPException:
        raise
    except web.RequestPayloadError as exc:  # the client's body broke off or is malformed
        return _error(400, f"request body cannot be read: {exc}")
    except Exception:  # a bug, not a bad request: log it and answer 500 without a traceback
        log.exception("prediction failed")
        return _error(500, "internal error while predicting")


async def _health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def failing(percent: float, draw: Callable[[], float] = random.random) -> Any:
    """A middleware answering that share of the API requests 500 (never /health): a bad
    version on purpose, to rehearse a rollout's rollback."""

    @web.middleware
    async def fail(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/health" and draw() * 100 < percent:
            return _error(500, f"failing on purpose (--fail-percent {percent:g})")
        return await handler(request)

    return fail


def build_app(
    directory: Path,
    max_body: int = DEFAULT_MAX_BODY,
    *,
    max_message: int = DEFAULT_MAX_MESSAGE,
    heartbeat: float = DEFAULT_HEARTBEAT,
    model: Model | None = None,
    fail_percent: float = 0.0,
) -> web.Application:
    """The aiohttp application serving one model directory (its model.json, unless
    `model` is given: a Model of one's own behind the same APIs)."""
    model = model if model is not None else load_model(directory)
    endpoints = read_endpoints(directory)
    middlewares = [_errors] + ([failing(fail_percent)] if fail_percent > 0 else [])
    app = web.Application(
        client_max_size=max_body,
        middlewares=middlewares,
        # Request bodies are decompressed by decode_content (bounded, 4xx on bad data).
        handler_args={"auto_decompress": False},
    )
    app.router.add_get("/health", _health)
    for endpoint in endpoints:
        if endpoint.websocket:
            handler = _websocket_handler(model, max_message, heartbeat)
        elif endpoint.file_field:
            handler = _file_handler(model, endpoint.file_field)
        else:
            handler = _json_handler(model, max_body)
        app.router.add_route(endpoint.method, endpoint.url, handler)
    return app


def serve(
    directory: Path,
    host: str,
    port: int,
    max_body: int = DEFAULT_MAX_BODY,
    fail_percent: float = 0.0,
) -> None:
    app = build_app(directory, max_body, fail_percent=fail_percent)
    web.run_app(app, host=host, port=port, access_log=None, print=None)
