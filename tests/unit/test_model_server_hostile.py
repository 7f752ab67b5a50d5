"""The model server under hostile requests (real aiohttp server on loopback): every bad body
is a 4xx with a JSON message (never a 500, which the batch worker retries), and a large
prediction never holds the event loop."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from inferops.runtime.model_server import build_app
from inferops.runtime.models import JsonObject, Model, load_model

REPO = Path(__file__).resolve().parents[2]
IRIS = REPO / "examples" / "iris" / "model"
IMAGES = REPO / "examples" / "image-stats" / "model"
MAX_BODY = 1024 * 1024
ROW = {"input_1": 5.1, "input_2": 3.5, "input_3": 1.4, "input_4": 0.2}
SEED = json.dumps({"data": {"req_data": [ROW]}}).encode()
JSON = {"Content-Type": "application/json"}
GATE_SECONDS = 20.0  # only reached when the test fails (the loop was blocked)


def run(model_dir: Path, test: Any, model: Model | None = None, max_body: int = MAX_BODY) -> None:
    async def go() -> None:
        app = build_app(model_dir, max_body, model=model)
        async with TestClient(TestServer(app)) as client:
            await test(client)

    asyncio.run(go())


MULTIPART = {"Content-Type": "multipart/form-data; boundary=x"}


def part(content: bytes) -> bytes:
    return (
        b'--x\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n\r\n'
        + content
        + b"\r\n--x--\r\n"
    )


DEEP = b'{"data": {"req_data": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
BIG_INT = b'{"data": {"req_data": [{"input_1": ' + b"9" * 5000 + b"}]}}"
# (model, body, headers, status, fragment of the JSON error)
CASES = [
    (IRIS, DEEP, JSON, 400, "nested deeper than 100 levels"),
    (IRIS, b"[" * 900 + b"]" * 900, JSON, 400, "nested deeper than 100 levels"),
    (IRIS, BIG_INT, JSON, 400, "more than 256 digits"),
    (IRIS, b'{"x": 1e999}', JSON, 400, "out of range"),
    (
        IRIS,
        gzip.compress(b" " * (8 * MAX_BODY)),
        {**JSON, "Content-Encoding": "gzip"},
        413,
        "over 1048576 bytes decompressed",
    ),
    (
        IRIS,
        zlib.compress(b"[" * (8 * MAX_BODY)),
        {**JSON, "Content-Encoding": "deflate"},
        413,
        "over 1048576 bytes decompressed",
    ),
    (IRIS, b"not gzip", {**JSON, "Content-Encoding": "gzip"}, 400, "not valid gzip data"),
    (IRIS, gzip.compress(SEED)[:-5], {**JSON, "Content-Encoding": "gzip"}, 400, "truncated"),
    (IRIS, SEED, {**JSON, "Content-Encoding": "br"}, 415, "Content-Encoding 'br' is not supported"),
    (IRIS, SEED, {**JSON, "Content-Encoding": "zstd"}, 415, "not supported"),
    # A codec that raises UnicodeError, not UnicodeDecodeError.
    (IRIS, b"xn--a", {"Content-Type": "application/json; charset=idna"}, 400, "not valid JSON"),
    (
        IMAGES,
        part(b"x"),
        {"Content-Type": "multipart/form-data"},
        400,
        "malformed multipart body: boundary missed",
    ),
    (
        IMAGES,
        b"garbage",
        MULTIPART,
        400,
        "malformed multipart body: Could not find starting boundary",
    ),
    (
        IMAGES,
        gzip.compress(part(b"\0" * (8 * MAX_BODY))),
        {**MULTIPART, "Content-Encoding": "gzip"},
        415,
        "without Content-Encoding",
    ),
    (IMAGES, part(b"\0" * (2 * MAX_BODY)), MULTIPART, 413, "too large"),
    (  # aiohttp's message spans lines; the answer is one
        IMAGES,
        b"--x\r\nX: " + b"y" * 9000 + b"\r\n\r\nz\r\n--x--\r\n",
        MULTIPART,
        400,
        "malformed multipart body: 400, message: Got more than 8190 bytes when reading",
    ),
]


@pytest.mark.parametrize(("model", "body", "headers", "status", "fragment"), CASES)
def test_hostile_bodies_get_a_4xx_with_a_message(
    model: Path,
    body: bytes,
    headers: dict[str, str],
    status: int,
    fragment: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.post("/", data=body, headers=headers)
        answer = await response.json()
        assert (response.status, fragment in answer["error"]) == (status, True), answer
        assert "\n" not in answer["error"]
        assert (await client.post("/health")).status == 405  # still serving
        assert (await client.get("/health")).status == 200

    run(model, check)
    assert not [r for r in caplog.records if r.exc_info], "hostile input logged a traceback"


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate", "raw-deflate", "identity"])
def test_compressed_json_requests_are_still_answered(coding: str) -> None:
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    body = {
        "gzip": gzip.compress(SEED),
        "x-gzip": gzip.compress(SEED),
        "deflate": zlib.compress(SEED),
        "raw-deflate": raw.compress(SEED) + raw.flush(),
        "identity": SEED,
    }[coding]
    header = "deflate" if coding == "raw-deflate" else coding

    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.post("/", data=body, headers={**JSON, "Content-Encoding": header})
        assert response.status == 200
        assert (await response.json())["resp_data"][0]["predictresult"] == "setosa"

    run(IRIS, check)


@dataclass
class GatedModel:
    """The real iris model, made to wait inside predict_json until the test has seen
    /health answered. Were prediction on the event loop, /health could not be answered
    while it waits: the gate would time out and the test fail."""

    model: Model
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    timed_out: bool = False

    def predict_json(self, body: Any) -> JsonObject:
        self.entered.set()
        self.timed_out = not self.release.wait(GATE_SECONDS)
        return self.model.predict_json(body)

    def predict_file(self, filename: str, content: bytes) -> JsonObject:
        return self.model.predict_file(filename, content)


@pytest.mark.parametrize("transport", ["post", "websocket"])
def test_a_15_mb_prediction_does_not_hold_health(transport: str) -> None:
    gated = GatedModel(load_model(IRIS))
    # WebSocket messages are at most 1 MiB: the gate, not the size, shows where it runs.
    size = 15 * 1024 * 1024 if transport == "post" else 512 * 1024
    rows = size // len(json.dumps(ROW))
    body = json.dumps({"data": {"req_data": [ROW] * rows}})

    async def predict(client: TestClient[Any, Any]) -> int:
        if transport == "post":
            response = await client.post("/", data=body.encode(), headers=JSON)
            return len((await response.json())["resp_data"])
        async with client.ws_connect("/ws") as ws:
            await ws.send_str(body)
            replies = 0
            while (await ws.receive_json()).get("done") is None:
                replies += 1
            return replies

    async def check(client: TestClient[Any, Any]) -> None:
        answer = asyncio.create_task(predict(client))
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, gated.entered.wait, GATE_SECONDS)
        health = await client.get("/health", timeout=aiohttp.ClientTimeout(total=GATE_SECONDS))
        assert health.status == 200
        gated.release.set()
        assert await answer == rows
        assert not gated.timed_out

    run(IRIS, check, model=gated, max_body=16 * 1024 * 1024)
