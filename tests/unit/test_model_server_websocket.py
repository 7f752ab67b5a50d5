"""The model server's WebSocket API: a streaming prediction (real WebSocket on loopback).

Contract (README, "Applications and the reference model server"): a text message holding
the POST body gets one `{"index": i, ...}` message per item, equal to the POST answer's
`resp_data[i]`, then `{"done": true, "count": n}`; a malformed message gets one
`{"error": ...}` and the connection stays usable; binary frames close it with 1003,
messages over the limit with 1009; the server pings every `heartbeat` seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from inferops.contract.request_schema import is_websocket_api
from inferops.runtime.model_server import BINARY_REFUSED, build_app, read_endpoints
from inferops.runtime.models import ModelError

REPO = Path(__file__).resolve().parents[2]
IRIS = REPO / "examples" / "iris" / "model"
FEATURES = ("input_1", "input_2", "input_3", "input_4")
RECEIVE_TIMEOUT = 10  # a guard against a hang, never an assertion


def body(*rows: tuple[float, ...]) -> dict[str, Any]:
    return {"data": {"req_data": [dict(zip(FEATURES, r, strict=True)) for r in rows]}}


SEED = body((5.1, 3.5, 1.4, 0.2))
THREE = body((5.1, 3.5, 1.4, 0.2), (5.9, 3.0, 4.2, 1.5), (6.7, 3.0, 5.2, 2.3))
GRID = body(
    *itertools.product((4.5, 5.8, 7.1), (2.2, 3.1, 4.0), (1.2, 3.9, 6.5), (0.2, 1.3, 2.4))
)  # 81 items over the whole iris range
INTEGERS = body((5, 3, 1, 0), (7, 3, 6, 2))


def with_client(
    test: Callable[[TestClient[Any, Any]], Awaitable[None]], model: Path = IRIS, **options: Any
) -> None:
    async def run() -> None:
        async with TestClient(TestServer(build_app(model, **options))) as client:
            await test(client)

    asyncio.run(run())


async def exchange(ws: aiohttp.ClientWebSocketResponse, text: str) -> list[dict[str, Any]]:
    """Sends one message; returns the replies up to and including `done` or `error`."""
    await ws.send_str(text)
    return await replies(ws)


async def replies(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while not out or not ({"done", "error"} & out[-1].keys()):
        out.append(await ws.receive_json(timeout=RECEIVE_TIMEOUT))
    return out


def items_of(answer: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-item messages without their index, after checking indexes and `done`."""
    *items, done = answer
    assert done == {"done": True, "count": len(items)}, answer
    assert [m["index"] for m in items] == list(range(len(items)))
    return [{k: v for k, v in m.items() if k != "index"} for m in items]


# ---- the contract -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_body",
    [SEED, THREE, GRID, INTEGERS],
    ids=["seed", "three-classes", "grid-81", "integers"],
)
def test_websocket_predictions_equal_the_post_api(request_body: dict[str, Any]) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        post = await client.post("/", json=request_body)
        assert post.status == 200
        expected = (await post.json())["resp_data"]
        async with client.ws_connect("/ws") as ws:
            answer = await exchange(ws, json.dumps(request_body))
        assert items_of(answer) == expected
        assert len(expected) == len(request_body["data"]["req_data"])

    with_client(check)


def test_the_seed_rows_stream_the_three_species_in_order() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        async with client.ws_connect("/ws") as ws:
            answer = await exchange(ws, json.dumps(THREE))
        assert [m.get("predictresult") for m in answer] == [
            "setosa",
            "versicolor",
            "virginica",
            None,
        ]
        assert answer[0]["index"] == 0 and answer[-1] == {"done": True, "count": 3}

    with_client(check)


HUGE_INT = "1" + "0" * 400  # beyond float's range
ROW = '"input_2": 1, "input_3": 1, "input_4": 1'

# (message, fragment of the error). Each is also posted to the HTTP API (400 expected).
MALFORMED = [
    ("{", "not valid JSON"),
    ("", "not valid JSON"),
    ("[1, 2]", "req_data"),
    ("null", "req_data"),
    ('"predict"', "req_data"),
    ('{"data": [1]}', "req_data"),
    ('{"data": {"req_data": []}}', "at least one item"),
    ('{"data": {"req_data": {"input_1": 1}}}', "at least one item"),
    ('{"data": {"req_data": [1]}}', "must be an object"),
    ('{"data": {"req_data": [{"input_1": "a"}]}}', "input_1 must be a number"),
    ('{"data": {"req_data": [{"input_1": 1, "input_2": 1, "input_3": 1}]}}', "input_4"),
    (f'{{"data": {{"req_data": [{{"input_1": true, {ROW}}}]}}}}', "input_1 must be a number"),
    (f'{{"data": {{"req_data": [{{"input_1": NaN, {ROW}}}]}}}}', "NaN is not JSON"),
    (f'{{"data": {{"req_data": [{{"input_1": -Infinity, {ROW}}}]}}}}', "-Infinity is not JSON"),
    (f'{{"data": {{"req_data": [{{"input_1": {HUGE_INT}, {ROW}}}]}}}}', "more than 256 digits"),
    (f'{{"data": {{"req_data": [{{"input_1": 1e400, {ROW}}}]}}}}', "1e400 is out of range"),
    (
        '{"data": {"req_data": [{"input_1": 1e308, "input_2": 1e308, "input_3": 1e308, '
        '"input_4": 1e308}]}}',
        "too large to score",
    ),
    ("1" * 5000, "more than 256 digits"),
    ("[" * 50_000, "nested deeper than 100 levels"),
    ('{"data": {"req_data": [{"\\ud800": 1}]}}', "unpaired surrogate"),
    ('{"data": {"req_data": [' + "{" * 20_000, "not valid JSON"),
]
MALFORMED_IDS = [f"malformed-{i}" for i in range(len(MALFORMED))]


@pytest.mark.parametrize(("message", "fragment"), MALFORMED, ids=MALFORMED_IDS)
def test_a_malformed_message_gets_an_error_and_the_connection_stays_usable(
    message: str, fragment: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def check(client: TestClient[Any, Any]) -> None:
        async with client.ws_connect("/ws") as ws:
            first = await exchange(ws, json.dumps(SEED))
            answer = await exchange(ws, message)
            assert len(answer) == 1 and set(answer[0]) == {"error"}, answer
            assert fragment in answer[0]["error"]
            assert await exchange(ws, json.dumps(SEED)) == first
            assert not ws.closed

    with_client(check)
    assert not [r for r in caplog.records if r.exc_info], "hostile input logged a traceback"


@pytest.mark.parametrize(("message", "fragment"), MALFORMED, ids=MALFORMED_IDS)
def test_the_same_malformed_bodies_get_400_from_the_post_api(
    message: str, fragment: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.post(
            "/", data=message.encode(), headers={"Content-Type": "application/json"}
        )
        assert response.status == 400
        assert fragment in (await response.json())["error"]

    with_client(check)
    assert not [r for r in caplog.records if r.exc_info], "hostile input logged a traceback"


@pytest.mark.parametrize(
    ("payload", "charset"),
    [
        (b"\xff\xfe{", "utf-8"),
        (json.dumps(SEED).encode(), "no-such-charset"),
    ],
)
def test_undecodable_post_bodies_get_400(payload: bytes, charset: str) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.post(
            "/", data=payload, headers={"Content-Type": f"application/json; charset={charset}"}
        )
        assert response.status == 400
        assert "not valid JSON" in (await response.json())["error"]

    with_client(check)


def test_many_messages_on_one_connection_are_answered_in_order() -> None:
    bodies = [
        body((4.5 + i % 30 / 10, 3.0, 1.0 + i % 50 / 10, 0.1 + i % 25 / 10)) for i in range(300)
    ]
    texts = [json.dumps(b) if i % 7 else "{not json" for i, b in enumerate(bodies)]

    async def check(client: TestClient[Any, Any]) -> None:
        expected = []
        for i, b in enumerate(bodies):
            if i % 7:
                expected.append((await (await client.post("/", json=b)).json())["resp_data"])
        async with client.ws_connect("/ws") as ws:
            for text in texts:  # pipelined: every message sent before any reply is read
                await ws.send_str(text)
            answers = [await replies(ws) for _ in texts]
            # Still usable afterwards, one message at a time.
            assert items_of(await exchange(ws, json.dumps(THREE)))[0]["predictresult"] == "setosa"
        errors = [a for i, a in enumerate(answers) if not i % 7]
        assert all(len(a) == 1 and "not valid JSON" in a[0]["error"] for a in errors)
        assert [items_of(a) for i, a in enumerate(answers) if i % 7] == expected

    with_client(check)


@pytest.mark.parametrize("compress", [0, 15], ids=["plain", "permessage-deflate"])
def test_a_binary_frame_closes_the_connection_with_1003(compress: int) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        async with client.ws_connect("/ws", compress=compress) as ws:
            assert items_of(await exchange(ws, json.dumps(SEED)))
            await ws.send_bytes(json.dumps(SEED).encode())
            closing = await ws.receive(timeout=RECEIVE_TIMEOUT)
            assert closing.type is aiohttp.WSMsgType.CLOSE
            assert (closing.data, closing.extra) == (1003, BINARY_REFUSED.decode())
            assert ws.closed and ws.close_code == 1003
        async with client.ws_connect("/ws") as ws:  # the server serves new connections
            assert items_of(await exchange(ws, json.dumps(SEED)))

    with_client(check)


@pytest.mark.parametrize(
    ("compress", "size"),
    [
        (0, 1025),  # one byte over the limit
        (0, 64 * 1024),
        (15, 64 * 1024),  # compresses to almost nothing: the limit is on the inflated size
    ],
)
def test_a_message_over_the_limit_closes_the_connection_with_1009(
    compress: int, size: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    at_limit = json.dumps(SEED).ljust(1024)  # trailing spaces: still valid JSON

    async def check(client: TestClient[Any, Any]) -> None:
        async with client.ws_connect("/ws", compress=compress) as ws:
            assert len(at_limit) == 1024
            assert items_of(await exchange(ws, at_limit))
            await ws.send_str("x" * size)
            closing = await ws.receive(timeout=RECEIVE_TIMEOUT)
            assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1009
            assert ws.close_code == 1009
        assert (await client.get("/health")).status == 200
        async with client.ws_connect("/ws") as ws:
            assert items_of(await exchange(ws, json.dumps(SEED)))

    with_client(check, max_message=1024)
    assert not [r for r in caplog.records if r.exc_info]


def frame(opcode: int, payload: bytes, *, claimed: int | None = None) -> bytes:
    """One final, masked client frame; `claimed` overrides the length in the header."""
    length = len(payload) if claimed is None else claimed
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    elif length < 1 << 16:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    key = b"\x0f\x1e\x2d\x3c"
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def raw_close_code(host: str, port: int, data: bytes) -> int:
    """Handshakes on /ws by hand, sends `data`, returns the code of the server's close frame."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), RECEIVE_TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head
        writer.write(data)
        first = await asyncio.wait_for(reader.readexactly(2), RECEIVE_TIMEOUT)
        assert first[0] == 0x88, first  # a final close frame, unmasked, short payload
        payload = await asyncio.wait_for(reader.readexactly(first[1]), RECEIVE_TIMEOUT)
        return int.from_bytes(payload[:2], "big")
    finally:
        writer.close()


TEXT, BINARY = 0x1, 0x2


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(TEXT, b'{"data": "\xff\xfe"}'), 1007),  # text that is not UTF-8
        (frame(TEXT, b"", claimed=1 << 62), 1009),  # a header claiming an exabyte
        (frame(TEXT, b"x" * 2048, claimed=2048), 1009),
        (frame(BINARY, b"\x00" * 10), 1003),
        (frame(0x3, b"x"), 1002),  # a reserved opcode
    ],
    ids=["invalid-utf8", "claims-exabyte", "over-limit", "binary", "reserved-opcode"],
)
def test_hostile_frames_close_with_the_protocol_code(
    data: bytes, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def check(client: TestClient[Any, Any]) -> None:
        assert await raw_close_code(str(client.host), int(client.port or 0), data) == code
        async with client.ws_connect("/ws") as ws:  # the server serves new connections
            assert items_of(await exchange(ws, json.dumps(SEED)))

    with_client(check, max_message=1024)
    assert not [r for r in caplog.records if r.exc_info], "hostile input logged a traceback"


def test_the_server_pings_so_idle_connections_stay_open() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        async with client.ws_connect("/ws", autoping=False) as ws:
            ping = await ws.receive(timeout=RECEIVE_TIMEOUT)
            assert ping.type is aiohttp.WSMsgType.PING
            await ws.pong(ping.data)
            assert items_of(await exchange(ws, json.dumps(SEED)))
            assert not ws.closed

    with_client(check, heartbeat=0.2)


def test_plain_http_on_the_websocket_api_gets_426_and_the_rest_is_unchanged() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.get("/ws")
        assert response.status == 426 and response.headers["Upgrade"] == "websocket"
        assert "Upgrade: websocket" in (await response.json())["error"]
        assert (await client.post("/ws", json=SEED)).status == 405
        health = await client.get("/health")
        assert (health.status, await health.json()) == (200, {"status": "ok"})
        post = await client.post("/", json=SEED)
        assert (await post.json())["resp_data"][0]["predictresult"] == "setosa"

    with_client(check)


# ---- the declaration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "websocket"),
    [
        ("application/json; transport=websocket", True),
        ("application/json;transport=WebSocket", True),
        ('application/json; charset=utf-8; transport="websocket"', True),
        ("application/json", False),
        ("application/json; transport=http", False),
        ("application/json; websocket", False),
        ("websocket", False),
        (None, False),
        (42, False),
    ],
)
def test_a_websocket_api_is_declared_by_its_request_content_type(
    content_type: Any, websocket: bool
) -> None:
    api: dict[str, Any] = {"method": "get", "url": "/ws", "request": {"data": {}}}
    if content_type is not None:
        api["request"]["Content-type"] = content_type
    assert is_websocket_api(api) is websocket


def iris_config_with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    config = json.loads((IRIS / "config.json").read_text())
    ws = next(a for a in config["apis"] if is_websocket_api(a))
    change(ws)
    return config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.update(method="post"), "API /ws: a WebSocket API must use method get"),
        (lambda a: a.pop("method"), "must use method get"),
        (
            lambda a: a["request"]["data"]["properties"].update(images={"type": "file"}),
            "takes JSON text messages, not files",
        ),
    ],
)
def test_a_websocket_api_the_server_cannot_serve_is_refused_at_start(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    shutil.copy(IRIS / "model.json", tmp_path / "model.json")
    (tmp_path / "config.json").write_text(json.dumps(iris_config_with(change)))
    with pytest.raises(ModelError, match=message):
        build_app(tmp_path)


def test_the_iris_config_declares_the_post_api_then_the_websocket_api() -> None:
    endpoints = read_endpoints(IRIS)
    assert [(e.method, e.url, e.websocket) for e in endpoints] == [
        ("POST", "/", False),
        ("GET", "/ws", True),
    ]
    config = json.loads((IRIS / "config.json").read_text())
    post, ws = config["apis"]
    assert ws["request"]["data"] == post["request"]["data"]


def test_the_websocket_example_application_declares_the_model_config() -> None:
    """examples/iris-websocket-application.yaml lists exactly the APIs the iris model serves."""
    app = yaml.safe_load((REPO / "examples" / "iris-websocket-application.yaml").read_text())
    (version,) = app["spec"]["versions"]
    assert version["websocket"] is True
    assert version["args"] == ["model-server", "--model", "/opt/inferops/models/iris"]
    config = json.loads((IRIS / "config.json").read_text())
    assert version["apis"] == config["apis"]
