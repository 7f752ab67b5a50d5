"""WebSocket predictions through the operator's router: real nginx, real model servers.

The router runs exactly the config the operator generates for a `websocket: true` service,
in front of two `inferops model-server` processes (two versions of the iris app) on
loopback. Version 2.0.0's model differs only in its class labels, so every prediction names
the version that answered it. Fails (never skips) when nginx is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from inferops.demo import model_server
from inferops.resources.naming import child_name
from inferops.resources.nginx import HEALTH_PATH, VERSION_HEADER, Backend
from inferops.runtime.model_server import BINARY_REFUSED, DEFAULT_MAX_MESSAGE
from tests.router_support import Router, running_router
from tests.unit.test_model_server_websocket import (
    IRIS,
    SEED,
    THREE,
    exchange,
    items_of,
    replies,
)

VERSIONS = ("1.0.0", "2.0.0")
NAMES = {v: child_name("iris-websocket-online", "iris-websocket", v) for v in VERSIONS}
CONNECTIONS = 32  # at 50/50, both versions answer unless 2 * 0.5**32 strikes
RECEIVE_TIMEOUT = 10  # a guard against a hang, never an assertion


def version_two_model(directory: Path) -> Path:
    """The iris model with its class labels suffixed `-v2`: same maths, visible answers."""
    directory.mkdir()
    (directory / "config.json").write_text((IRIS / "config.json").read_text())
    model = json.loads((IRIS / "model.json").read_text())
    model["classes"] = [f"{c}-v2" for c in model["classes"]]
    (directory / "model.json").write_text(json.dumps(model))
    return directory


@contextlib.contextmanager
def two_versions_behind_the_router(tmp_path: Path) -> Iterator[tuple[Router, dict[str, str]]]:
    """(the router, version -> its model server's host:port), 50/50, websocket mode."""
    models = {"1.0.0": IRIS, "2.0.0": version_two_model(tmp_path / "v2")}
    with contextlib.ExitStack() as stack:
        address = {
            v: stack.enter_context(model_server(models[v], tmp_path / f"{v}.log")) for v in VERSIONS
        }
        router = stack.enter_context(
            running_router([Backend(NAMES[v], address[v], 50) for v in VERSIONS], websocket=True)
        )
        yield router, address


def post(address: str, body: Any) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"http://{address}/",
        json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: list[dict[str, Any]] = json.load(response)["resp_data"]
        return answer


def answering_version(items: list[dict[str, Any]]) -> str:
    suffixed = {item["predictresult"].endswith("-v2") for item in items}
    assert len(suffixed) == 1, items  # one connection, one version
    return "2.0.0" if suffixed.pop() else "1.0.0"


def test_websocket_predictions_flow_through_the_router_to_both_versions(
    tmp_path: Path,
) -> None:
    async def converse(url: str) -> list[list[list[dict[str, Any]]]]:
        async with aiohttp.ClientSession() as session:

            async def one() -> list[list[dict[str, Any]]]:
                async with session.ws_connect(f"{url}/ws") as ws:
                    return [
                        await exchange(ws, json.dumps(THREE)),
                        await exchange(ws, "{not json"),
                        await exchange(ws, json.dumps(SEED)),
                        await exchange(ws, json.dumps(THREE)),
                    ]

            return await asyncio.gather(*(one() for _ in range(CONNECTIONS)))

    with two_versions_behind_the_router(tmp_path) as (router, address):
        assert "proxy_set_header Upgrade $http_upgrade;" in router.config
        expected = {v: (post(address[v], THREE), post(address[v], SEED)) for v in VERSIONS}
        conversations = asyncio.run(converse(router.url))
        log = router.log()
    assert expected["1.0.0"][0] != expected["2.0.0"][0]
    versions: Counter[str] = Counter()
    for three, error, seed, three_again in conversations:
        version = answering_version(items_of(three))
        versions[version] += 1
        assert items_of(three) == items_of(three_again) == expected[version][0]
        assert items_of(seed) == expected[version][1]
        assert len(error) == 1 and "not valid JSON" in error[0]["error"]
    assert set(versions) == set(VERSIONS), (versions, log)
    assert sum(versions.values()) == CONNECTIONS


def test_many_pipelined_messages_on_one_connection_through_the_router(tmp_path: Path) -> None:
    total = 200

    async def converse(url: str) -> list[list[dict[str, Any]]]:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"{url}/ws") as ws:
            for _ in range(total):
                await ws.send_str(json.dumps(THREE))
            return [await replies(ws) for _ in range(total)]

    with two_versions_behind_the_router(tmp_path) as (router, address):
        expected = {v: post(address[v], THREE) for v in VERSIONS}
        answers = asyncio.run(converse(router.url))
    version = answering_version(items_of(answers[0]))
    assert [items_of(a) for a in answers] == [expected[version]] * total


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        ("binary", 1003, BINARY_REFUSED.decode()),
        ("oversize", 1009, ""),
    ],
)
def test_close_codes_pass_through_the_router(
    tmp_path: Path, frame: str, code: int, reason: str
) -> None:
    async def converse(url: str) -> tuple[list[dict[str, Any]], aiohttp.WSMessage]:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{url}/ws", compress=0) as ws:
                answer = await exchange(ws, json.dumps(SEED))
                if frame == "binary":
                    await ws.send_bytes(b"\x00\x01")
                else:
                    await ws.send_str("x" * (DEFAULT_MAX_MESSAGE + 1))
                closing = await ws.receive(timeout=RECEIVE_TIMEOUT)
            # The router and the model servers go on serving new connections.
            async with session.ws_connect(f"{url}/ws") as ws:
                assert items_of(await exchange(ws, json.dumps(SEED)))
            return answer, closing

    with two_versions_behind_the_router(tmp_path) as (router, _):
        answer, closing = asyncio.run(converse(router.url))
    assert len(items_of(answer)) == 1
    assert closing.type is aiohttp.WSMsgType.CLOSE
    assert (closing.data, closing.extra) == (code, reason)


def test_plain_http_still_works_on_a_websocket_router(tmp_path: Path) -> None:
    async def converse(url: str) -> list[tuple[int, str, str]]:
        out = []
        async with aiohttp.ClientSession() as session:
            for _ in range(20):
                async with session.post(f"{url}/", json=SEED) as response:
                    result = (await response.json())["resp_data"][0]["predictresult"]
                    out.append((response.status, result, response.headers[VERSION_HEADER]))
            async with session.get(f"{url}/ws") as response:  # no Upgrade header
                out.append((response.status, "", response.headers[VERSION_HEADER]))
            async with session.get(f"{url}{HEALTH_PATH}") as response:
                out.append((response.status, await response.text(), ""))
        return out

    with two_versions_behind_the_router(tmp_path) as (router, _):
        *posts, plain_ws, health = asyncio.run(converse(router.url))
    for status, result, backend in posts:
        assert status == 200
        assert result == ("setosa-v2" if backend == NAMES["2.0.0"] else "setosa")
        assert backend in NAMES.values()
    assert plain_ws[0] == 426 and plain_ws[2] in NAMES.values()
    assert health == (200, "ok\n", "")
