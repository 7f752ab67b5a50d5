"""The generated router config running in real nginx in front of real upstreams (loopback).

The tests fail (never skip) when nginx is not installed: the router is the product.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections import Counter

import aiohttp
import pytest

from inferops.resources.naming import child_name
from inferops.resources.nginx import HEALTH_PATH, VERSION_HEADER, Backend, RateLimit, nginx_config
from tests.router_support import (
    BODY_HEADER,
    Reply,
    fire,
    nginx_check,
    running_router,
    running_upstreams,
)


def answered_by(replies: list[Reply]) -> Counter[str]:
    """How many 200s each upstream answered (its name is the body)."""
    return Counter(r.body for r in replies if r.status == 200)


def test_a_70_30_split_lands_within_two_points_over_10000_requests() -> None:
    with (
        running_upstreams("v1", "v2") as up,
        running_router([Backend("v1", up["v1"], 70), Backend("v2", up["v2"], 30)]) as router,
    ):
        replies, _ = fire(f"{router.url}/predict", 10_000, concurrency=32)
        log = router.log()
    assert len(replies) == 10_000
    assert Counter(r.status for r in replies) == {200: 10_000}, log
    # Count who really answered (the upstream's body and own header) and check the router's
    # header names the same upstream on every reply.
    assert all(r.body == r.upstream == r.backend for r in replies)
    counts = answered_by(replies)
    assert set(counts) == {"v1", "v2"}
    share = 100 * counts["v1"] / 10_000
    assert abs(share - 70) <= 2, counts


def test_a_100_0_split_sends_nothing_to_the_zero_version() -> None:
    with (
        running_upstreams("stable", "dark") as up,
        running_router(
            [Backend("stable", up["stable"], 100), Backend("dark", up["dark"], 0)]
        ) as router,
    ):
        replies, _ = fire(f"{router.url}/", 2_000, concurrency=32, method="POST", json_body={})
    assert Counter(r.status for r in replies) == {200: 2_000}
    assert answered_by(replies) == {"stable": 2_000}
    assert {r.backend for r in replies} == {"stable"}


def test_large_request_bodies_pass_and_bodies_over_16m_get_413() -> None:
    with running_upstreams("big") as up, running_router([Backend("big", up["big"], 100)]) as router:
        # Over nginx's in-memory buffer: the body goes through client_temp under runtime_dir.
        body = b"x" * (2 * 1024 * 1024)
        with urllib.request.urlopen(urllib.request.Request(router.url, body), timeout=30) as r:
            assert (r.status, r.read(), r.headers[BODY_HEADER]) == (200, b"big", str(len(body)))
        too_big = urllib.request.Request(router.url, b"x" * (16 * 1024 * 1024 + 1))
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(too_big, timeout=30)
        refused.value.close()
        assert refused.value.code == 413
        assert "a client request body is buffered to a temporary file" in router.log()


def test_three_versions_50_30_20_pass_nginx_t_and_route_to_all() -> None:
    names = [child_name("iris-online", "iris", v) for v in ("1.0.0", "2.0.0", "3.0.0")]
    weights = [50, 30, 20]
    with running_upstreams(*names) as up:
        backends = [Backend(n, up[n], w) for n, w in zip(names, weights, strict=True)]
        # The operator's own parameters (two replicas, two workers), with and without a limit.
        for limit in (None, RateLimit(100, 50)):
            config = nginx_config(backends, limit=limit, replicas=2, worker_processes="2")
            for name, weight in zip(names, weights, strict=True):
                assert f"{weight}% {name};" in config
            checked = nginx_check(config)
            assert checked.returncode == 0, checked.stderr
        with running_router(backends) as router:
            replies, _ = fire(router.url, 3_000, concurrency=32)
    counts = answered_by(replies)
    assert sum(counts.values()) == 3_000 and set(counts) == set(names)
    for name, weight in zip(names, weights, strict=True):
        assert abs(100 * counts[name] / 3_000 - weight) <= 4, counts


def test_websocket_echo_passes_through_the_router() -> None:
    async def talk(url: str) -> tuple[list[str], bytes, str, str]:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{url}/ws/any/path") as ws:
                texts = []
                for text in ("hello", "inferops", "bye"):
                    await ws.send_str(text)
                    texts.append(await asyncio.wait_for(ws.receive_str(), 10))
                await ws.send_bytes(b"\x00\x01")
                binary = await asyncio.wait_for(ws.receive_bytes(), 10)
            # Plain HTTP keeps working on the same router (no Upgrade: keep-alive upstream).
            async with session.get(url) as response:
                plain = await response.text()
                backend = response.headers.get(VERSION_HEADER, "")
        return texts, binary, plain, backend

    with (
        running_upstreams("echo-a", "echo-b") as up,
        running_router(
            [Backend("echo-a", up["echo-a"], 50), Backend("echo-b", up["echo-b"], 50)],
            websocket=True,
        ) as router,
    ):
        assert "Upgrade $http_upgrade" in router.config
        texts, binary, plain, backend = asyncio.run(talk(router.url))
    name = texts[0].split(":", 1)[0]
    assert name in {"echo-a", "echo-b"}
    assert texts == [f"{name}:hello", f"{name}:inferops", f"{name}:bye"]
    assert binary == name.encode() + b":\x00\x01"
    assert plain == backend and plain in {"echo-a", "echo-b"}


def test_a_traffic_limit_answers_429_beyond_rate_and_burst() -> None:
    rate, burst = 20, 5
    with (
        running_upstreams("limited") as up,
        running_router(
            [Backend("limited", up["limited"], 100)], limit=RateLimit(rate, burst)
        ) as router,
    ):
        replies, elapsed = fire(router.url, 200, concurrency=200)
        # The health location is never limited.
        health, _ = fire(f"{router.url}{HEALTH_PATH}", 50, concurrency=50)
    statuses = Counter(r.status for r in replies)
    assert set(statuses) == {200, 429}, statuses
    # nginx lets the first request plus `burst` through at once, then `rate` per second.
    assert statuses[200] >= burst + 1, statuses
    assert statuses[200] <= burst + 1 + rate * elapsed + 3, (statuses, elapsed)
    assert all(r.body == "limited" for r in replies if r.status == 200)
    assert Counter(r.status for r in health) == {200: 50}
