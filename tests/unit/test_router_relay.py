"""The shadow relay of the router agent, on its own socket: it answers nginx only, relays
only to the versions of its configuration, and compares answers as documented."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from inferops.contract.router import (
    ORIGINAL_URI_HEADER,
    PRODUCTION_HEADER,
    RELAY_SOCKET,
    SHADOW_HEADER,
    RouterAgentConfig,
    Target,
)
from inferops.runtime.agent.capture import BodyTap
from inferops.runtime.router.command import running_agent
from inferops.runtime.router.relay import Answer, _same_body, version_url
from tests.router_support import free_port, free_udp_port


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/predict?x=1", "http://10.0.0.1:8080/predict?x=1"),
        ("//evil.example/x", "http://10.0.0.1:8080//evil.example/x"),  # a path, not a host
        ("/a%2Fb?q=%20", "http://10.0.0.1:8080/a%2Fb?q=%20"),  # sent as received
    ],
)
def test_a_relayed_request_stays_on_the_configured_address(uri: str, expected: str) -> None:
    url = version_url("10.0.0.1:8080", uri)
    assert (str(url), url.host) == (expected, "10.0.0.1")


def answer(body: bytes, content_type: str = "application/json", status: int = 200) -> Answer:
    import hashlib

    tap = BodyTap(1024)
    tap.feed(body)
    return Answer(
        "v", status, 0.1, tap, hashlib.sha256(body).hexdigest(), {"Content-Type": content_type}
    )


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (answer(b'{"a":1,"b":2}'), answer(b'{"b": 2, "a": 1}'), True),
        (answer(b'{"a":1}'), answer(b'{"a":2}'), False),
        (answer(b"abc", "text/plain"), answer(b"abc", "text/plain"), True),
        (answer(b" abc", "text/plain"), answer(b"abc", "text/plain"), False),
        (answer(b"{}"), Answer("v", None, 1.0, BodyTap(0), error="timeout"), False),
    ],
)
def test_same_body(a: Answer, b: Answer, same: bool) -> None:
    assert _same_body(a, b) is same


def test_the_relay_refuses_what_nginx_would_never_send(tmp_path: Path) -> None:
    config = RouterAgentConfig(
        service="svc",
        runtime_dir=str(tmp_path),
        metrics_port=free_port(),
        metrics_host="127.0.0.1",
        log_port=free_udp_port(),
        targets=(
            Target(upstream="prod", label="iris:1.0.0", address="127.0.0.1:9"),
            Target(upstream="dark", label="iris:2.0.0", address="127.0.0.1:9", shadow_percent=5),
        ),
    )

    async def run() -> list[int]:
        async with running_agent(config):
            connector = aiohttp.UnixConnector(path=str(tmp_path / RELAY_SOCKET))
            async with aiohttp.ClientSession(connector=connector) as session:
                statuses = []
                for headers in (
                    {},  # a plain request
                    {SHADOW_HEADER: "prod", ORIGINAL_URI_HEADER: "/"},  # not a shadow
                    {SHADOW_HEADER: "nowhere", ORIGINAL_URI_HEADER: "/"},
                    {SHADOW_HEADER: "dark", ORIGINAL_URI_HEADER: "http://evil/"},
                    {PRODUCTION_HEADER: "dark"},  # a shadow is not production
                    {SHADOW_HEADER: "dark", ORIGINAL_URI_HEADER: "/ok"},  # accepted
                ):
                    async with session.post("http://relay/x", headers=headers, data=b"{}") as r:
                        statuses.append(r.status)
                return statuses

    assert asyncio.run(run()) == [400, 400, 400, 400, 400, 204]
