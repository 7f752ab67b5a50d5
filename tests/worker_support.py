"""Real HTTP servers on loopback for the batch worker tests, and object builders.

`serve(app)` runs an aiohttp application in a background thread (its own event loop) on a
free 127.0.0.1 port. `recording_model()` is a model that records every request and answers
by what it got: JSON bodies are echoed back, unless `input_1` asks for a 500 (500), a 400
(400) or a slow answer (999); multipart files are answered with their name and size, unless
the file name contains `fail` (500), `bad` (400) or `slow`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

REPO = Path(__file__).resolve().parents[1]
IRIS_MODEL = REPO / "examples" / "iris" / "model"
IMAGES_MODEL = REPO / "examples" / "image-stats" / "model"
SLOW_SECONDS = 2.0

SEED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "data": {
            "type": "object",
            "properties": {
                "req_data": {
                    "type": "array",
                    "items": [
                        {
                            "type": "object",
                            "properties": {
                                "input_1": {"type": "number"},
                                "input_2": {"type": "number"},
                                "input_3": {"type": "number"},
                                "input_4": {"type": "number"},
                            },
                        }
                    ],
                }
            },
        }
    },
}
FILE_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"images": {"type": "file"}}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(app: web.Application) -> Iterator[str]:
    """Runs app on loopback in a thread; yields its base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    port = free_port()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "test server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@dataclass
class Recording:
    """What the recording model received: (content type, JSON body or (field, filename))."""

    requests: list[tuple[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    in_flight: int = 0
    peak: int = 0  # the most requests it was answering at once

    def bodies(self) -> list[Any]:
        return [body for kind, body in self.requests if kind == "application/json"]


def recording_model(recording: Recording) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        recording.in_flight += 1
        recording.peak = max(recording.peak, recording.in_flight)
        try:
            return await answer(request)
        finally:
            recording.in_flight -= 1

    async def answer(request: web.Request) -> web.Response:
        if recording.delay:
            await asyncio.sleep(recording.delay)
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            part = await reader.next()
            assert isinstance(part, BodyPartReader)
            content = await part.read()
            name = part.filename or ""
            recording.requests.append((request.content_type, (part.name, name)))
            if "fail" in name:
                return web.json_response({"error": "boom"}, status=500)
            if "bad" in name:
                return web.json_response({"error": "not an image"}, status=400)
            if "slow" in name:
                await asyncio.sleep(SLOW_SECONDS)
            return web.json_response({"field": part.name, "name": name, "size": len(content)})
        raw = await request.read()
        body = json.loads(raw)
        recording.requests.append((request.content_type, body))
        first = body.get("data", {}).get("req_data", [{}])[0].get("input_1")
        if first == 500:
            return web.json_response({"error": "model crashed"}, status=500)
        if first == 400:
            return web.json_response({"error": "bad input"}, status=400)
        if first == 999:
            await asyncio.sleep(SLOW_SECONDS)
        # Pretty-printed on purpose: the worker must still write one JSON line per row.
        return web.Response(
            text=json.dumps({"echo": body}, indent=2), content_type="application/json"
        )

    app = web.Application()
    app.router.add_post("/", handle)
    app.router.add_post("/predict", handle)
    return app


def application(schema: dict[str, Any], url: str = "/", name: str = "app") -> dict[str, Any]:
    return {
        "apiVersion": "serving.inferops.dev/v1alpha1",
        "kind": "AIApplication",
        "metadata": {"name": name},
        "spec": {
            "versions": [
                {
                    "version": "1.0.0",
                    "image": "example/model:1",
                    "apis": [
                        {
                            "method": "post",
                            "url": url,
                            "request": {"Content-type": "multipart/form-data", "data": schema},
                        }
                    ],
                }
            ]
        },
    }


def batch_service(
    input_path: str, output_path: str, app: str = "app", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "serving.inferops.dev/v1alpha1",
        "kind": "BatchService",
        "metadata": {"name": "batch", "namespace": "default"},
        "spec": {
            "application": app,
            "version": "1.0.0",
            "inputPath": input_path,
            "outputPath": output_path,
            "specification": "cpu.2u4g",
            **spec,
        },
    }


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def manifest_lines(folder: Path, task: str) -> list[dict[str, Any]]:
    """Every line of every output manifest of a task, chunk by chunk in number order."""

    def number(p: Path) -> int:
        stem = p.name.removesuffix(".manifest")
        return int(stem.rsplit("_", 1)[1]) if "_" in stem else 0

    chunks = sorted(folder.glob(f"infer-result-{task}*.manifest"), key=number)
    return [line for chunk in chunks for line in read_lines(chunk)]
