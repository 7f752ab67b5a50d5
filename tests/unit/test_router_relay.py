"""The shadow relay of the router agent, on its own socket: it answers nginx only, relays
only to the versions of its configuration, and compares answers as documented."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from inferops.contract.router import (
    MIRROR_SOCKET,
    ORIGINAL_URI_HEADER,
    PRODUCTION_HEADER,
    RELAY_SOCKET,
    SHADOW_HEADER,
    RouterAgentConfig,
    Target,
)
from inferops.runtime.agent.capture import BodyTap
from inferops.runtime.router.command import running_agent
from inferops.runtime.router.intake import BAD_REQUEST, NO_CONTENT, Copy, MirrorIntake
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

    async def run() -> tuple[list[int], list[int]]:
        async with running_agent(config):
            copies = []
            connector = aiohttp.UnixConnector(path=str(tmp_path / MIRROR_SOCKET))
            async with aiohttp.ClientSession(connector=connector) as session:
                for headers in (
                    {},  # no shadow named
                    {SHADOW_HEADER: "prod", ORIGINAL_URI_HEADER: "/"},  # not a shadow
                    {SHADOW_HEADER: "nowhere", ORIGINAL_URI_HEADER: "/"},
                    {SHADOW_HEADER: "dark", ORIGINAL_URI_HEADER: "http://evil/"},
                    {SHADOW_HEADER: "dark", ORIGINAL_URI_HEADER: "/ok"},  # taken
                ):
                    async with session.post("http://relay/x", headers=headers, data=b"{}") as r:
                        copies.append(r.status)
            pairs = []
            connector = aiohttp.UnixConnector(path=str(tmp_path / RELAY_SOCKET))
            async with aiohttp.ClientSession(connector=connector) as session:
                for headers in ({}, {PRODUCTION_HEADER: "dark"}, {PRODUCTION_HEADER: "nowhere"}):
                    async with session.post("http://relay/x", headers=headers, data=b"{}") as r:
                        pairs.append(r.status)
            return copies, pairs

    assert asyncio.run(run()) == ([400, 400, 400, 400, 204], [400, 400, 400])


def copies_of(*chunks: bytes, max_body: int = 100) -> tuple[list[Copy], bytes, bool]:
    """Feeds the intake these chunks: the copies it took, what it wrote, whether it closed."""
    taken: list[Copy] = []

    class Transport:
        written = b""
        closed = False

        def write(self, data: bytes) -> None:
            self.written += data

        def close(self) -> None:
            self.closed = True

    transport = Transport()
    intake = MirrorIntake(lambda c: taken.append(c) is None, max_body)
    intake.transport = transport  # type: ignore[assignment]
    for chunk in chunks:
        intake.data_received(chunk)
    return taken, transport.written, transport.closed


HEAD = b"POST /inferops-mirror/0 HTTP/1.1\r\nHost: x\r\nX-Inferops-Shadow: dark\r\n"


def test_the_intake_reads_copies_across_chunks_and_keeps_the_connection() -> None:
    one = HEAD + b"Content-Length: 5\r\n\r\nhello"
    two = HEAD + b"Content-Length: 0\r\n\r\n"
    stream = one + two
    taken, written, closed = copies_of(stream[:7], stream[7:40], stream[40:])
    assert [(c.method, c.path, c.body) for c in taken] == [
        ("POST", "/inferops-mirror/0", b"hello"),
        ("POST", "/inferops-mirror/0", b""),
    ]
    assert taken[0].headers["x-inferops-shadow"] == "dark"
    assert written == NO_CONTENT * 2 and not closed


@pytest.mark.parametrize(
    "data",
    [
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        HEAD + b"Content-Length: 101\r\n\r\n",  # over the bound
        HEAD + b"Content-Length: -1\r\n\r\n",
        HEAD + b"Content-Length: x\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET http://evil/ HTTP/1.1\r\n\r\n",
        HEAD + b" bad: header\r\n\r\n",
        b"POST / HTTP/1.1\r\n" + b"X: " + b"y" * 70_000,  # a head that never ends
    ],
)
def test_the_intake_refuses_what_nginx_never_sends_and_closes(data: bytes) -> None:
    taken, written, closed = copies_of(data)
    assert taken == [] and written == BAD_REQUEST and closed
