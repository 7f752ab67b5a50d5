"""`inferops model-server`: a small reference runtime honouring the application contract.

It serves `GET /health` and every API of the model's `config.json`: JSON input
(`{"data": {"req_data": [...]}}`, one prediction per item) or file input (multipart/form-data
under the schema's file property). Malformed requests get 400 with a message, bodies over
the limit 413; image decoding runs in a thread pool so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import BodyPartReader, web

from inferops.runtime.models import BadInputError, Model, ModelError, load_model, read_json
from inferops.worker.mapping import file_property, request_schema

log = logging.getLogger(__name__)
DEFAULT_MAX_BODY = 16 * 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@dataclass(frozen=True)
class Endpoint:
    method: str
    url: str
    file_field: str | None


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
        method = str(api.get("method", "post")).upper()
        endpoints.append(Endpoint(method, api["url"], file_property(request_schema(api))))
    return endpoints


def _json_handler(model: Model) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json(loads=json.loads)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "request body is not valid JSON")
        try:
            return web.json_response(model.predict_json(body))
        except BadInputError as exc:
            return _error(400, str(exc))

    return handle


def _file_handler(model: Model, field: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if not request.content_type.startswith("multipart/"):
            return _error(400, f"send the file as multipart/form-data under {field!r}")
        try:
            reader = await request.multipart()
        except (ValueError, AssertionError) as exc:
            return _error(400, f"malformed multipart body: {exc}")
        async for part in reader:
            if isinstance(part, BodyPartReader) and part.name == field:
                content = bytes(await part.read())
                filename = part.filename or ""
                loop = asyncio.get_running_loop()
                try:
                    result = await loop.run_in_executor(None, model.predict_file, filename, content)
                except BadInputError as exc:
                    return _error(400, str(exc))
                return web.json_response(result)
        return _error(400, f"no form field {field!r} in the request")

    return handle


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge as exc:
        return _error(413, f"request body too large: {exc.text}")
    except web.HTTPException:
        raise
    except Exception:  # a bug, not a bad request: log it and answer 500 without a traceback
        log.exception("prediction failed")
        return _error(500, "internal error while predicting")


async def _health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(directory: Path, max_body: int = DEFAULT_MAX_BODY) -> web.Application:
    """The aiohttp application serving one model directory."""
    model = load_model(directory)
    endpoints = read_endpoints(directory)
    app = web.Application(client_max_size=max_body, middlewares=[_errors])
    app.router.add_get("/health", _health)
    for endpoint in endpoints:
        handler = (
            _file_handler(model, endpoint.file_field)
            if endpoint.file_field
            else _json_handler(model)
        )
        app.router.add_route(endpoint.method, endpoint.url, handler)
    return app


def serve(directory: Path, host: str, port: int, max_body: int = DEFAULT_MAX_BODY) -> None:
    app = build_app(directory, max_body)
    web.run_app(app, host=host, port=port, access_log=None, print=None)
