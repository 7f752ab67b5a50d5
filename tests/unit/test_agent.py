"""`inferops agent`: real HTTP on loopback through the agent to a real upstream, records in
a real S3-API server (moto on loopback) or local folders."""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict
from yarl import URL

from inferops.commands.agent import register as register_agent
from inferops.runtime import model_server
from inferops.runtime.agent import (
    COLLECTOR_KEY,
    HEALTH_PATH,
    AgentOptions,
    BodyTap,
    Captured,
    Collector,
    LineBuffer,
    Redaction,
    build_app,
    capture_body,
    options_from_args,
    safe_name,
)
from inferops.storage import Storage, parse_location
from tests.s3server import free_port

REPO = Path(__file__).resolve().parents[2]
IRIS = REPO / "examples" / "iris" / "model"
SEED_BODY = {
    "data": {"req_data": [{"input_1": 5.1, "input_2": 3.5, "input_3": 1.4, "input_4": 0.2}]}
}
FIELDS = {
    "time",
    "method",
    "path",
    "query",
    "request",
    "requestBytes",
    "requestTruncated",
    "requestHeaders",
    "status",
    "response",
    "responseBytes",
    "responseTruncated",
    "responseHeaders",
    "latencyMs",
    "service",
    "version",
    "pod",
}
NAME = re.compile(r"^(?P<prefix>.*)/svc/v1/pod-1-(?P<stamp>\d{8}T\d{9}Z)-(?P<seq>\d{6})\.jsonl$")
NEVER = 3600.0  # flush period for tests that flush explicitly


# --- a tiny upstream that shows what it received ------------------------------------------


def echo_app(hits: list[str] | None = None) -> web.Application:
    seen = hits if hits is not None else []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.path)
        body = await request.read()
        response = web.Response(
            status=201, body=body, headers={"X-Model": "echo-1"}, content_type=request.content_type
        )
        response.headers.add("Set-Cookie", "a=1; Path=/")
        response.headers.add("Set-Cookie", "b=2; Path=/")
        return response

    async def headers(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({k.lower(): v for k, v in request.headers.items()})

    async def query(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response(
            {"path": request.raw_path, "q": request.query.getall("q", [])}, status=202
        )

    async def gzipped(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(
            body=gzip.compress(b'{"zipped": true}'),
            content_type="application/json",
            headers={"Content-Encoding": "gzip"},
        )

    async def teapot(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"error": "short and stout"}, status=418)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/echo", echo)
    app.router.add_route("*", "/headers", headers)
    app.router.add_get("/query/{tail:.*}", query)
    app.router.add_get("/gzip", gzipped)
    app.router.add_route("*", "/teapot", teapot)
    return app


def options(upstream: str, output: str, **overrides: Any) -> AgentOptions:
    base = AgentOptions(
        output=output,
        upstream=upstream,
        service="svc",
        version="v1",
        pod="pod-1",
        flush_seconds=NEVER,
        flush_lines=10**6,
    )
    return replace(base, **overrides)


@asynccontextmanager
async def upstream_server(app: web.Application) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


@asynccontextmanager
async def agent(opts: AgentOptions) -> AsyncIterator[tuple[TestClient[Any, Any], Collector]]:
    app = build_app(opts)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, app[COLLECTOR_KEY]


def base_url(client: TestClient[Any, Any]) -> str:
    return str(client.make_url("")).rstrip("/")


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def records(collector: Collector) -> list[dict[str, Any]]:
    return [json.loads(line) for line in collector.buffer.lines()]


def s3_lines(s3: Any, bucket: str, prefix: str = "") -> tuple[list[str], list[dict[str, Any]]]:
    keys = sorted(
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    )
    lines = []
    for key in keys:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        assert body.endswith("\n")
        lines += [json.loads(line) for line in body.splitlines()]
    return keys, lines


# --- the proxy is transparent ----------------------------------------------------------------


def test_responses_are_identical_to_direct_ones(tmp_path: Path) -> None:
    async def test() -> None:
        async with (
            upstream_server(model_server.build_app(IRIS)) as iris,
            upstream_server(echo_app()) as echo,
            agent(options(base_url(iris), str(tmp_path))) as (via_iris, _),
            agent(options(base_url(echo), str(tmp_path))) as (via_echo, _),
        ):
            table: list[
                tuple[TestClient[Any, Any], TestClient[Any, Any], str, str, dict[str, Any]]
            ] = [
                (iris, via_iris, "POST", "/", {"json": SEED_BODY}),
                (
                    iris,
                    via_iris,
                    "POST",
                    "/",
                    {"data": b"not json", "headers": {"Content-Type": "application/json"}},
                ),
                (iris, via_iris, "GET", "/health", {}),
                (iris, via_iris, "GET", "/no/such/path", {}),
                (
                    echo,
                    via_echo,
                    "POST",
                    "/echo",
                    {"data": bytes(range(256)) * 8, "headers": {"Content-Type": "image/png"}},
                ),
                (echo, via_echo, "GET", "/query/a%2Fb/c?q=1&q=two%20words", {}),
                (echo, via_echo, "DELETE", "/teapot", {}),
                (echo, via_echo, "GET", "/gzip", {"auto_decompress": False}),
            ]
            for direct, proxied, method, path, kwargs in table:
                auto = kwargs.pop("auto_decompress", True)
                answers = []
                for client in (direct, proxied):
                    url = base_url(client) + path
                    async with (
                        aiohttp.ClientSession(auto_decompress=auto) as session,
                        session.request(method, URL(url, encoded=True), **kwargs) as response,
                    ):
                        answers.append(
                            (
                                response.status,
                                await response.read(),
                                response.headers.get("Content-Type"),
                                response.headers.get("X-Model"),
                                response.headers.get("Content-Encoding"),
                                response.headers.getall("Set-Cookie", []),
                            )
                        )
                assert answers[0] == answers[1], (method, path)
            # the custom header and both cookies really are there
            response = await via_echo.post("/echo", data=b"x")
            assert response.status == 201 and response.headers["X-Model"] == "echo-1"
            assert response.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
            # HEAD keeps the model's Content-Length
            direct_head = await echo.head("/teapot")
            proxied_head = await via_echo.head("/teapot")
            assert proxied_head.status == direct_head.status == 418
            assert proxied_head.headers["Content-Length"] == direct_head.headers["Content-Length"]

    run(test)


def test_hop_by_hop_headers_are_not_forwarded_and_nothing_is_added(tmp_path: Path) -> None:
    async def test() -> None:
        headers = {
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "1",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic eA==",
            "X-Request-Id": "r-1",
            "Authorization": "Bearer t",
        }
        async with (
            upstream_server(echo_app()) as echo,
            agent(options(base_url(echo), str(tmp_path))) as (via, _),
            aiohttp.ClientSession(
                skip_auto_headers=["User-Agent", "Accept-Encoding", "Accept"]
            ) as session,
            session.get(base_url(via) + "/headers", headers=headers) as response,
        ):
            seen = await response.json()
        assert seen["x-request-id"] == "r-1" and seen["authorization"] == "Bearer t"
        for name in (
            "x-hop",
            "keep-alive",
            "te",
            "proxy-authorization",
            "accept-encoding",
            "user-agent",
            "accept",
            "content-type",
        ):
            assert name not in seen, name

    run(test)


def test_health_is_answered_by_the_agent_itself(tmp_path: Path) -> None:
    async def test() -> None:
        hits: list[str] = []
        async with (
            upstream_server(echo_app(hits)) as echo,
            agent(options(base_url(echo), str(tmp_path))) as (via, collector),
        ):
            response = await via.get(HEALTH_PATH)
            assert response.status == 200 and await response.json() == {"status": "ok"}
            assert hits == [] and len(collector.buffer) == 0
            # the pod's probes still reach the model's own health path, and are not recorded
            response = await via.get("/teapot", headers={"User-Agent": "kube-probe/1.30"})
            assert response.status == 418 and hits == ["/teapot"] and len(collector.buffer) == 0
        dead = f"http://127.0.0.1:{free_port()}"
        async with agent(options(dead, str(tmp_path))) as (via, _):
            assert (await via.get(HEALTH_PATH)).status == 200

    run(test)


# --- records ----------------------------------------------------------------------------------


def test_sampled_lines_land_in_s3_as_json_lines(s3: Any) -> None:
    s3.create_bucket(Bucket="collect")

    async def test() -> None:
        async with (
            upstream_server(model_server.build_app(IRIS)) as iris,
            upstream_server(echo_app()) as echo,
            agent(options(base_url(iris), "obs://collect/rts")) as (via_iris, c1),
            agent(options(base_url(echo), "s3://collect/echo/")) as (via_echo, c2),
        ):
            answer = await (await via_iris.post("/?debug=1", json=SEED_BODY)).json()
            await via_echo.post(
                "/echo",
                data=b"\x00\x01binary",
                headers={"Content-Type": "application/octet-stream"},
            )
            await via_echo.get("/gzip")
            await via_echo.post(
                "/echo", data=b"{broken", headers={"Content-Type": "application/json"}
            )
            assert await c1.flush() and await c2.flush()
            assert c1.snapshot()["writtenLines"] == 1 and c2.snapshot()["writtenLines"] == 3
            assert len(c1.buffer) == len(c2.buffer) == 0

            keys, lines = s3_lines(s3, "collect", "rts/")
            assert len(keys) == 1 and NAME.match(keys[0])
            assert NAME.match(keys[0])["prefix"] == "rts"  # type: ignore[index]
            [line] = lines
            assert set(line) == FIELDS
            assert line["method"] == "POST" and line["path"] == "/" and line["query"] == "debug=1"
            assert line["request"] == SEED_BODY and line["response"] == answer
            assert line["status"] == 200 and line["latencyMs"] >= 0
            assert (line["service"], line["version"], line["pod"]) == ("svc", "v1", "pod-1")
            assert line["time"].endswith("Z")
            datetime.fromisoformat(line["time"].replace("Z", "+00:00"))

            keys, lines = s3_lines(s3, "collect", "echo/")
            assert len(keys) == 1 and NAME.match(keys[0])["prefix"] == "echo"  # type: ignore[index]
            binary, zipped, broken = lines
            assert binary["request"] == {"base64": base64.b64encode(b"\x00\x01binary").decode()}
            assert binary["response"] == binary["request"] and binary["status"] == 201
            assert zipped["request"] is None and zipped["response"] == {"zipped": True}
            assert broken["request"] == {"base64": base64.b64encode(b"{broken").decode()}

    run(test)


def test_every_flush_writes_a_new_file_named_by_pod_time_and_sequence(s3: Any) -> None:
    s3.create_bucket(Bucket="collect")

    async def test() -> None:
        async with (
            upstream_server(echo_app()) as echo,
            agent(options(base_url(echo), "s3://collect/out")) as (via, collector),
        ):
            for round_ in range(3):
                await via.post("/echo", json={"round": round_})
                assert await collector.flush()
            assert await collector.flush()  # nothing waiting: no empty file
        keys, lines = s3_lines(s3, "collect")
        assert [NAME.match(k)["seq"] for k in keys] == ["000000", "000001", "000002"]  # type: ignore[index]
        assert [line["request"] for line in lines] == [{"round": 0}, {"round": 1}, {"round": 2}]

    run(test)


def test_flush_lines_triggers_an_upload(tmp_path: Path) -> None:
    async def test() -> None:
        async with (
            upstream_server(echo_app()) as echo,
            agent(options(base_url(echo), str(tmp_path), flush_lines=3)) as (via, coll),
        ):
            for i in range(3):
                await via.post("/echo", json={"i": i})
            for _ in range(200):  # poll: the flusher runs on its own
                if coll.snapshot()["writtenLines"] == 3:
                    break
                await asyncio.sleep(0.05)
            assert coll.snapshot()["writtenLines"] == 3
        files = list((tmp_path / "svc" / "v1").glob("pod-1-*.jsonl"))
        assert len(files) == 1 and len(files[0].read_text().splitlines()) == 3

    run(test)


def test_the_flusher_writes_periodically_and_retries_after_a_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should be")

    async def test() -> None:
        output = str(blocker / "out")
        async with (
            upstream_server(echo_app()) as echo,
            agent(options(base_url(echo), output, flush_seconds=0.05)) as (via, collector),
        ):
            await via.post("/echo", json={"i": 0})
            for _ in range(400):  # poll: the flusher runs on its own
                if collector.snapshot()["failedUploads"] >= 1:
                    break
                await asyncio.sleep(0.02)
            assert collector.snapshot()["failedUploads"] >= 1 and len(collector.buffer) == 1
            blocker.unlink()  # the target becomes writable: the next round succeeds
            for _ in range(400):
                if collector.snapshot()["writtenLines"] == 1:
                    break
                await asyncio.sleep(0.02)
            assert collector.snapshot()["writtenLines"] == 1 and len(collector.buffer) == 0

    run(test)
    [written] = (blocker / "out" / "svc" / "v1").glob("pod-1-*.jsonl")
    assert json.loads(written.read_text())["request"] == {"i": 0}


@pytest.mark.parametrize(("ratio", "expected"), [(0.0, 0), (1.0, 60)])
def test_sample_ratio_zero_and_one(tmp_path: Path, ratio: float, expected: int) -> None:
    async def test() -> None:
        async with (
            upstream_server(echo_app()) as echo,
            agent(options(base_url(echo), str(tmp_path), sample_ratio=ratio)) as (via, c),
        ):
            for i in range(60):
                assert (await via.post("/echo", json={"i": i})).status == 201
            assert len(c.buffer) == expected
            if expected:
                assert [r["request"]["i"] for r in records(c)] == list(range(60))

    run(test)


def test_sample_ratio_half_records_roughly_half(tmp_path: Path) -> None:
    async def test() -> None:
        async with (
            upstream_server(echo_app()) as echo,
            agent(options(base_url(echo), str(tmp_path), sample_ratio=0.5)) as (via, c),
        ):
            for i in range(400):
                assert (await via.post("/echo", json={"i": i})).status == 201
            assert 120 <= len(c.buffer) <= 280  # binomial(400, .5): 200 +- 10 per sd
            assert len({r["request"]["i"] for r in records(c)}) == len(c.buffer)

    run(test)


def test_unwritable_target_keeps_a_bounded_buffer_and_counts_dropped_lines(s3: Any) -> None:
    async def test() -> None:
        async with (
            upstream_server(echo_app()) as echo,
            agent(options(base_url(echo), "s3://not-yet/out", max_buffer_lines=5)) as (
                via,
                collector,
            ),
        ):
            for i in range(12):
                assert (await via.post("/echo", json={"n": i})).status == 201
            assert not await collector.flush()  # no such bucket
            assert collector.dropped == 7 and len(collector.buffer) == 5
            assert [r["request"]["n"] for r in records(collector)] == [7, 8, 9, 10, 11]
            stats = await (await via.get("/inferops-agent/stats")).json()
            assert stats["dropped"] == 7 and stats["failedUploads"] == 1
            assert "bucket not found" in stats["lastError"]

            s3.create_bucket(Bucket="not-yet")  # the target becomes writable
            assert await collector.flush()
            assert collector.dropped == 7 and len(collector.buffer) == 0
        _, lines = s3_lines(s3, "not-yet")
        assert [line["request"]["n"] for line in lines] == [7, 8, 9, 10, 11]

    run(test)


# --- errors -----------------------------------------------------------------------------------


def test_model_down_is_a_502_with_a_json_error(tmp_path: Path) -> None:
    async def test() -> None:
        dead = f"http://127.0.0.1:{free_port()}"
        async with agent(options(dead, str(tmp_path))) as (via, collector):
            response = await via.post("/", json=SEED_BODY)
            assert response.status == 502
            assert response.content_type == "application/json"
            body = await response.json()
            assert "unreachable" in body["error"] and "Traceback" not in body["error"]
            assert len(collector.buffer) == 0  # the model never answered: nothing to record

    run(test)


def test_oversize_body_is_a_413_and_never_reaches_the_model_whole(tmp_path: Path) -> None:
    async def test() -> None:
        hits: list[str] = []
        async with (
            upstream_server(echo_app(hits)) as echo,
            agent(options(base_url(echo), str(tmp_path), max_body_bytes=1024)) as (via, c),
        ):
            assert (await via.post("/echo", data=b"x" * 1024)).status == 201
            response = await via.post("/echo", data=b"x" * 4096)
            assert response.status == 413
            assert "larger than 1024 bytes" in (await response.json())["error"]
            assert hits == ["/echo"] and len(c.buffer) == 1  # refused on its Content-Length

    run(test)


def test_a_chunked_body_past_the_limit_is_cut_off_before_the_model_has_it_whole(
    tmp_path: Path,
) -> None:
    """Without a Content-Length the body streams to the model as it comes and is counted on
    the way: past the limit the upstream request is aborted mid-body (the model may have
    seen its start, never a complete request) and the caller gets 413."""

    async def test() -> None:
        complete: list[int] = []

        async def count(request: web.Request) -> web.Response:
            complete.append(len(await request.read()))
            return web.Response(status=201)

        model = web.Application()
        model.router.add_post("/count", count)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"y" * 1000

        async with (
            upstream_server(model) as upstream,
            agent(options(base_url(upstream), str(tmp_path), max_body_bytes=1024)) as (via, c),
        ):
            response = await via.post("/count", data=chunks())
            assert response.status == 413
            assert "larger than 1024 bytes" in (await response.json())["error"]
            assert (await via.post("/count", data=b"z" * 1024)).status == 201
            assert complete == [1024] and len(c.buffer) == 1

    run(test)


# --- shutdown ---------------------------------------------------------------------------------


def test_shutdown_flushes(s3: Any) -> None:
    s3.create_bucket(Bucket="collect")

    async def test() -> None:
        async with (
            upstream_server(echo_app()) as echo,
            agent(options(base_url(echo), "s3://collect/x")) as (via, collector),
        ):
            for i in range(4):
                await via.post("/echo", json={"i": i})
            assert collector.snapshot()["writtenLines"] == 0
        keys, lines = s3_lines(s3, "collect")
        assert len(keys) == 1 and [line["request"]["i"] for line in lines] == [0, 1, 2, 3]

    run(test)


def test_sigterm_stops_the_agent_flushes_and_exits_zero(tmp_path: Path) -> None:
    async def test() -> None:
        async with upstream_server(echo_app()) as echo:
            port = free_port()
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "inferops.cli",
                "agent",
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--upstream",
                base_url(echo),
                "--output",
                f"file://{tmp_path}/collected",
                "--flush-seconds",
                "3600",
                env={
                    **os.environ,
                    "INFEROPS_SERVICE": "svc",
                    "INFEROPS_VERSION": "v1",
                    "POD_NAME": "pod-1",
                },
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                agent_url = f"http://127.0.0.1:{port}"
                async with aiohttp.ClientSession() as session:
                    for _ in range(300):
                        try:
                            async with session.get(agent_url + HEALTH_PATH) as response:
                                if response.status == 200:
                                    break
                        except aiohttp.ClientConnectionError:
                            await asyncio.sleep(0.05)
                    for i in range(3):
                        async with session.post(agent_url + "/echo", json={"i": i}) as response:
                            assert response.status == 201
                process.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(process.wait(), 30)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            assert process.stderr is not None
            stderr = (await process.stderr.read()).decode()
            assert code == 0, stderr
            assert "Traceback" not in stderr
        files = list((tmp_path / "collected" / "svc" / "v1").glob("pod-1-*.jsonl"))
        assert len(files) == 1, stderr
        lines = [json.loads(line) for line in files[0].read_text().splitlines()]
        assert [line["request"] for line in lines] == [{"i": 0}, {"i": 1}, {"i": 2}]
        assert {line["pod"] for line in lines} == {"pod-1"}

    run(test)


# --- streaming (issue 13): bytes pass through as they come, capture is bounded ------------

GUARD = 20.0  # seconds: a deadlock guard, never a timing assertion
MB = 1_000_000


def streaming_app(release: asyncio.Event) -> web.Application:
    """An upstream that streams: an SSE answer that holds its last event until the test
    releases it, chunked and sized answers, a 100 MB answer, and an echo that answers each
    request line as soon as it has read it."""

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"id: 1\ndata: first\n\n")
        await release.wait()  # the answer is not over until the client has seen event 1
        await response.write(b"id: 2\ndata: second\n\n")
        await response.write_eof()
        return response

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"one ", b"two ", b"three"):
            await response.write(part)
        await response.write_eof()
        return response

    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=b"exactly twenty bytes", content_type="text/plain")

    async def large(request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("bytes", str(100 * MB)))
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        block = bytes(range(256)) * 4096  # 1 MiB
        sent = 0
        while sent < size:
            part = block[: size - sent]
            await response.write(part)
            sent += len(part)
        await response.write_eof()
        return response

    async def lines(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        while line := await request.content.readline():
            await response.write(b"got " + line)
        await response.write_eof()
        return response

    app = web.Application(client_max_size=256 * MB)
    app.router.add_get("/events", events)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/sized", sized)
    app.router.add_get("/large", large)
    app.router.add_post("/lines", lines)
    return app


def test_sse_events_arrive_before_the_model_has_finished(tmp_path: Path) -> None:
    async def test() -> None:
        release = asyncio.Event()
        async with (
            upstream_server(streaming_app(release)) as model,
            agent(options(base_url(model), str(tmp_path))) as (via, collector),
            aiohttp.ClientSession() as session,
        ):
            async with (
                asyncio.timeout(GUARD),
                session.get(base_url(via) + "/events?stream=1") as response,
            ):
                # the model holds event 2 until event 1 has come through the agent
                assert await response.content.readuntil(b"\n\n") == b"id: 1\ndata: first\n\n"
                assert not release.is_set()
                release.set()
                assert await response.content.read() == b"id: 2\ndata: second\n\n"
                assert response.headers["Content-Type"] == "text/event-stream"
                assert response.headers.get("Transfer-Encoding") == "chunked"
            [line] = records(collector)
            sent = b"id: 1\ndata: first\n\nid: 2\ndata: second\n\n"
            assert line["response"] == {"base64": base64.b64encode(sent).decode()}
            assert line["responseTruncated"] is False and line["responseBytes"] == len(sent)

    run(test)


def test_chunked_answers_stay_chunked_and_sized_ones_keep_their_length(tmp_path: Path) -> None:
    async def test() -> None:
        async with (
            upstream_server(streaming_app(asyncio.Event())) as model,
            agent(options(base_url(model), str(tmp_path))) as (via, _),
        ):
            for client in (model, via):
                response = await client.get("/chunked")
                assert response.headers.get("Transfer-Encoding") == "chunked"
                assert "Content-Length" not in response.headers
                assert await response.read() == b"one two three"
                response = await client.get("/sized")
                assert response.headers["Content-Length"] == "20"
                assert "Transfer-Encoding" not in response.headers

    run(test)


def test_request_bodies_stream_to_the_model_as_they_come(tmp_path: Path) -> None:
    """The caller sends its second line only once the model's answer to the first has come
    back through the agent: an agent that read the whole request first would never pass it."""

    async def test() -> None:
        answered = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield b"one\n"
            await answered.wait()
            yield b"two\n"

        async with (
            upstream_server(streaming_app(asyncio.Event())) as model,
            agent(options(base_url(model), str(tmp_path))) as (via, collector),
            aiohttp.ClientSession() as session,
        ):
            async with asyncio.timeout(GUARD):
                async with session.post(base_url(via) + "/lines", data=body()) as response:
                    assert await response.content.readline() == b"got one\n"
                    answered.set()
                    assert await response.content.read() == b"got two\n"
            [line] = records(collector)
            assert line["request"] == {"base64": base64.b64encode(b"one\ntwo\n").decode()}
            assert line["requestBytes"] == 8 and line["requestTruncated"] is False

    run(test)


def test_an_answer_the_model_breaks_off_is_broken_off_for_the_caller_too(tmp_path: Path) -> None:
    """A model that dies mid-answer: the caller must see an incomplete answer (not a clean,
    shorter one) whether the answer was chunked or sized; nothing is recorded."""

    async def test() -> None:
        async def broken(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse()
            if request.query.get("sized"):
                response.content_length = 1000
            await response.prepare(request)
            await response.write(b"the start")
            assert request.transport is not None
            request.transport.close()
            return response

        model = web.Application()
        model.router.add_get("/broken", broken)
        async with (
            upstream_server(model) as upstream,
            agent(options(base_url(upstream), str(tmp_path))) as (via, collector),
            aiohttp.ClientSession() as session,
        ):
            for path in ("/broken", "/broken?sized=1"):
                async with asyncio.timeout(GUARD), session.get(base_url(via) + path) as response:
                    assert response.status == 200
                    with pytest.raises(aiohttp.ClientPayloadError):
                        await response.read()
            assert len(collector.buffer) == 0

    run(test)


def test_a_caller_that_leaves_mid_stream_closes_the_model_connection(tmp_path: Path) -> None:
    async def test() -> None:
        gone = asyncio.Event()

        async def endless(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            try:
                while True:
                    await response.write(b"data: tick\n\n")
                    await asyncio.sleep(0.01)
            except (ConnectionError, asyncio.CancelledError):  # aiohttp cancels on hang-up
                gone.set()
                raise

        model = web.Application()
        model.router.add_get("/endless", endless)
        async with (
            upstream_server(model) as upstream,
            agent(options(base_url(upstream), str(tmp_path))) as (via, collector),
            aiohttp.ClientSession() as session,
        ):
            async with asyncio.timeout(GUARD):
                async with session.get(base_url(via) + "/endless") as response:
                    assert await response.content.readuntil(b"\n\n") == b"data: tick\n\n"
                    response.close()  # the caller hangs up
                await gone.wait()  # and the model's connection goes with it
            assert len(collector.buffer) == 0

    run(test)


def test_compressed_request_bodies_reach_the_model_as_sent(tmp_path: Path) -> None:
    """The agent forwards the bytes it got: a gzip body stays gzip (the model decodes it,
    bounded, as the reference model server does); only the record holds it decoded."""

    async def test() -> None:
        async def raw(request: web.Request) -> web.Response:
            return web.json_response(
                {
                    "encoding": request.headers.get("Content-Encoding"),
                    "length": request.headers.get("Content-Length"),
                    "body": base64.b64encode(await request.read()).decode(),
                }
            )

        model = web.Application(handler_args={"auto_decompress": False})
        model.router.add_post("/raw", raw)
        sent = gzip.compress(json.dumps(SEED_BODY).encode())
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        async with (
            upstream_server(model) as upstream,
            agent(options(base_url(upstream), str(tmp_path))) as (via, collector),
        ):
            seen = await (await via.post("/raw", data=sent, headers=headers)).json()
            assert seen == {
                "encoding": "gzip",
                "length": str(len(sent)),
                "body": base64.b64encode(sent).decode(),
            }
            [line] = records(collector)
            assert line["request"] == SEED_BODY and line["requestBytes"] == len(sent)

    run(test)


def test_a_100_mb_answer_passes_through_with_a_bounded_truncated_capture(tmp_path: Path) -> None:
    cap = 64 * 1024

    async def test() -> None:
        async with (
            upstream_server(streaming_app(asyncio.Event())) as model,
            agent(options(base_url(model), str(tmp_path), max_capture_bytes=cap)) as (
                via,
                collector,
            ),
            aiohttp.ClientSession() as session,
        ):
            received = 0
            head = b""
            async with session.get(base_url(via) + "/large") as response:
                assert response.status == 200
                assert response.headers["Content-Length"] == str(100 * MB)
                async for part in response.content.iter_any():
                    if len(head) < cap:
                        head += part[: cap - len(head)]
                    received += len(part)
            assert received == 100 * MB
            [line] = records(collector)
            assert line["responseTruncated"] is True and line["responseBytes"] == 100 * MB
            assert base64.b64decode(line["response"]["base64"]) == head
            assert len(head) == cap
            assert line["requestTruncated"] is False and line["requestBytes"] == 0

    run(test)


def test_a_large_request_is_streamed_and_recorded_truncated(tmp_path: Path) -> None:
    async def test() -> None:
        async with (
            upstream_server(echo_app()) as echo,
            agent(
                options(base_url(echo), str(tmp_path), max_capture_bytes=100, max_body_bytes=MB)
            ) as (via, collector),
        ):
            payload = json.dumps({"text": "z" * 200}).encode()
            response = await via.post(
                "/echo", data=payload, headers={"Content-Type": "application/json"}
            )
            assert response.status == 201 and await response.read() == payload
            [line] = records(collector)
            for side in ("request", "response"):
                assert line[side] == {"base64": base64.b64encode(payload[:100]).decode()}
                assert line[f"{side}Truncated"] is True
                assert line[f"{side}Bytes"] == len(payload)

    run(test)


# --- flushing by size (issue 13): a full buffer is written, not dropped -----------------------


def test_one_megabyte_bodies_are_flushed_by_size_and_none_is_dropped(s3: Any) -> None:
    """Healthy storage and 1 MB bodies: before this, the byte bound dropped lines while the
    flusher slept (flush-seconds, flush-lines far away). Here each request waits until the
    storage has caught up (what healthy storage means), so any drop is the agent's fault."""
    s3.create_bucket(Bucket="collect")
    sent = 24
    max_bytes = 16 * 1024 * 1024

    async def test() -> None:
        opts = options("", "s3://collect/big", max_buffer_bytes=max_bytes)
        async with upstream_server(echo_app()) as echo:
            opts = replace(opts, upstream=base_url(echo))
            async with agent(opts) as (via, collector):
                body = bytes(range(256)) * (MB // 256) + b"x" * (MB % 256)
                writing = True
                for i in range(sent):
                    response = await via.post(
                        f"/echo?i={i}",
                        data=body,
                        headers={"Content-Type": "application/octet-stream"},
                    )
                    assert response.status == 201 and len(await response.read()) == MB
                    for _ in range(400 if writing else 0):  # wait for the storage, bounded
                        if collector.buffer.nbytes < max_bytes // 2:
                            break
                        await asyncio.sleep(0.025)
                    else:
                        writing = False  # nothing is being written: stop waiting for it
                stats = collector.snapshot()
                assert stats["dropped"] == 0, stats
                assert stats["writtenFiles"] >= 2, stats  # written by size, not only at the end
        _, lines = s3_lines(s3, "collect")
        assert sorted(int(line["query"].split("=")[1]) for line in lines) == list(range(sent))

    run(test)


# --- failing uploads are visible (issue 13) -----------------------------------------------


def test_failing_uploads_show_in_stats_and_on_the_uploads_health_path(s3: Any) -> None:
    async def test() -> None:
        async with (
            upstream_server(echo_app()) as echo,
            agent(options(base_url(echo), "s3://not-yet/out")) as (via, collector),
        ):
            await via.post("/echo", json={"n": 1})
            for attempt in range(1, 4):
                assert not await collector.flush()  # no such bucket
                stats = await (await via.get("/inferops-agent/stats")).json()
                assert stats["consecutiveFailedUploads"] == attempt
                uploads = await via.get("/inferops-agent/healthz/uploads")
                # failing after 3 consecutive failed flushes (3 flush periods), not before
                assert stats["uploadsFailing"] is (attempt >= 3)
                assert uploads.status == (503 if attempt >= 3 else 200)
                # serving health is not storage health: the pod stays Ready
                assert (await via.get(HEALTH_PATH)).status == 200
            body = await uploads.json()
            assert body["status"] == "failing" and "bucket not found" in body["lastError"]

            s3.create_bucket(Bucket="not-yet")  # storage recovers
            assert await collector.flush()
            stats = await (await via.get("/inferops-agent/stats")).json()
            assert stats["uploadsFailing"] is False and stats["consecutiveFailedUploads"] == 0
            uploads = await via.get("/inferops-agent/healthz/uploads")
            assert uploads.status == 200 and (await uploads.json())["status"] == "ok"

    run(test)


# --- redaction (issue 13) -------------------------------------------------------------------


def test_secrets_in_query_and_headers_are_redacted_in_records_but_reach_the_model(
    tmp_path: Path,
) -> None:
    async def test() -> None:
        async with (
            upstream_server(echo_app()) as echo,
            agent(options(base_url(echo), str(tmp_path))) as (via, collector),
            aiohttp.ClientSession() as session,
        ):
            query = "?api_key=s3cr3t-1&x=1&TOKEN=s3cr3t-2&sig=s3cr3t-3&y"
            headers = {
                "Authorization": "Bearer s3cr3t-4",
                "Cookie": "session=s3cr3t-5",
                "X-Api-Key": "s3cr3t-6",
                "X-Request-Id": "r-1",
            }
            url = URL(base_url(via) + "/teapot" + query, encoded=True)
            async with session.get(url, headers=headers) as response:
                assert response.status == 418
            await session.post(base_url(via) + "/echo?password=s3cr3t-7", data=b"x")
            raw = b"".join(collector.buffer.lines()).decode()
            assert "s3cr3t" not in raw
            # only the record is redacted: the model gets every value as sent
            url = URL(base_url(via) + "/headers" + query, encoded=True)
            async with session.get(url, headers=headers) as response:
                seen = await response.json()
            assert seen["authorization"] == "Bearer s3cr3t-4"
            assert seen["x-api-key"] == "s3cr3t-6" and seen["cookie"] == "session=s3cr3t-5"
            get, post, _ = records(collector)
            assert get["query"] == "api_key=[REDACTED]&x=1&TOKEN=[REDACTED]&sig=[REDACTED]&y"
            assert get["requestHeaders"]["authorization"] == "[REDACTED]"
            assert get["requestHeaders"]["cookie"] == "[REDACTED]"
            assert get["requestHeaders"]["x-api-key"] == "[REDACTED]"
            assert get["requestHeaders"]["x-request-id"] == "r-1"
            assert post["query"] == "password=[REDACTED]"
            assert post["responseHeaders"]["set-cookie"] == "[REDACTED]"
            assert post["responseHeaders"]["x-model"] == "echo-1"

    run(test)


# --- units: buffer, bodies, names, command line ----------------------------------------------


def test_line_buffer_drops_oldest_by_lines_and_bytes() -> None:
    buffer = LineBuffer(max_lines=3, max_bytes=100)
    assert [buffer.add(b"%d\n" % i) for i in range(5)] == [0, 0, 0, 1, 1]
    assert buffer.lines() == [b"2\n", b"3\n", b"4\n"] and buffer.dropped == 2
    assert buffer.add(b"x" * 98) == 2  # over the byte bound: older lines make room
    assert buffer.lines() == [b"4\n", b"x" * 98] and buffer.nbytes == 100
    assert buffer.add(b"y" * 101) == 3  # a line larger than the bound cannot be kept at all
    assert len(buffer) == 0 and buffer.nbytes == 0 and buffer.dropped == 7


def test_line_buffer_keeps_lines_until_commit_and_tolerates_drops_meanwhile() -> None:
    buffer = LineBuffer(max_lines=4)
    for i in range(3):
        buffer.add(b"%d" % i)
    batch = buffer.take()
    assert batch.lines == (b"0", b"1", b"2") and len(buffer) == 3  # still held
    for i in range(3, 6):  # while the upload runs, two of the batch's lines get dropped
        buffer.add(b"%d" % i)
    assert buffer.dropped == 2 and buffer.lines() == [b"2", b"3", b"4", b"5"]
    buffer.commit(batch)  # the batch was written after all: those lines were not lost
    assert buffer.lines() == [b"3", b"4", b"5"] and buffer.dropped == 0
    assert buffer.take(2).lines == (b"3", b"4")
    with pytest.raises(ValueError, match="at least one line"):
        LineBuffer(0)


def test_collector_flushes_to_a_local_folder_with_a_fixed_clock(tmp_path: Path) -> None:
    fixed = datetime.fromisoformat("2024-05-06T07:08:09.123+00:00")
    collector = Collector(
        Storage(),
        parse_location(f"file://{tmp_path}/out/"),
        "my svc",
        "..",
        "pod/1",
        clock=lambda: fixed,
    )

    async def test() -> None:
        collector.record({"a": 1})
        collector.record({"b": "é"})
        assert await collector.flush()
        await collector.close()

    run(test)
    written = tmp_path / "out" / "my_svc" / "unknown" / "pod_1-20240506T070809123Z-000000.jsonl"
    assert written.read_bytes() == '{"a":1}\n{"b":"é"}\n'.encode()
    with pytest.raises(ValueError, match="not JSON compliant"):
        collector.record({"nan": float("nan")})


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "expected"),
    [
        (b'{"a": [1, 2]}', "application/json", "", {"a": [1, 2]}),
        (b'{"a": 1}', "application/vnd.api+json; charset=utf-8", "", {"a": 1}),
        (b"[1]", "text/plain", "", {"base64": base64.b64encode(b"[1]").decode()}),
        (b"{nope", "application/json", "", {"base64": base64.b64encode(b"{nope").decode()}),
        (
            b'{"x": NaN}',
            "application/json",
            "",
            {"base64": base64.b64encode(b'{"x": NaN}').decode()},
        ),
        (b"", "application/json", "", None),
        (gzip.compress(b'{"g": 1}'), "application/json", "gzip", {"g": 1}),
        (b"\x00br", "application/json", "br", {"base64": base64.b64encode(b"\x00br").decode()}),
    ],
)
def test_capture_body(body: bytes, content_type: str, encoding: str, expected: Any) -> None:
    assert capture_body(body, content_type, encoding, cap=40) == Captured(expected, False)


def b64(data: bytes) -> dict[str, str]:
    return {"base64": base64.b64encode(data).decode()}


@pytest.mark.parametrize(
    ("body", "size", "content_type", "encoding", "cap", "expected"),
    [
        # over the cap: the first 10 bytes, as base64 even when the type is JSON
        (b"x" * 11, None, "application/octet-stream", "", 10, b64(b"x" * 10)),
        (b'{"a": "bcdefghij"}', None, "application/json", "", 10, b64(b'{"a": "bcd')),
        # what a tap kept of a 1 MB body: the size says it was cut
        (b"y" * 10, 10**6, "text/plain", "", 10, b64(b"y" * 10)),
        (b'{"a": 1}', 10**6, "application/json", "", 10, b64(b'{"a": 1}')),
        # a small body that inflates past the cap (a gzip bomb): cut after inflating
        (gzip.compress(b"y" * 500), None, "text/plain", "gzip", 40, b64(b"y" * 40)),
        # the start of a gzip stream decodes as far as it goes
        (gzip.compress(b"z" * 10_000)[:40], 5000, "text/plain", "gzip", 40, b64(b"z" * 40)),
    ],
)
def test_capture_body_truncated(
    body: bytes, size: int | None, content_type: str, encoding: str, cap: int, expected: Any
) -> None:
    captured = capture_body(body, content_type, encoding, cap=cap, size=size)
    assert captured == Captured(expected, True)


def test_body_tap_keeps_the_cap_and_counts_the_rest() -> None:
    tap = BodyTap(5)
    for chunk in (b"ab", b"cdefg", b"", b"hij"):
        tap.feed(chunk)
    assert (tap.kept, tap.size) == (b"abcde", 10)
    nothing = BodyTap(0)
    nothing.feed(b"abc")
    assert (nothing.kept, nothing.size) == (b"", 3)


@pytest.mark.parametrize(
    ("query", "extra", "expected"),
    [
        ("", (), ""),
        ("a=1&b=2", (), "a=1&b=2"),
        ("api_key=s&x=1", (), "api_key=[REDACTED]&x=1"),
        # names compare case-insensitively and after percent-decoding; encoding is kept
        (
            "API_KEY=s&Api%5FKey=t&access%5ftoken=u",
            (),
            "API_KEY=[REDACTED]&Api%5FKey=[REDACTED]&access%5ftoken=[REDACTED]",
        ),
        # every default, repeated names, a name without a value, empty parts kept as sent
        (
            "apikey=1&key=2&token=3&password=4&secret=5&sig=6&signature=7&key=8&token&&z=9",
            (),
            "apikey=[REDACTED]&key=[REDACTED]&token=[REDACTED]&password=[REDACTED]"
            "&secret=[REDACTED]&sig=[REDACTED]&signature=[REDACTED]&key=[REDACTED]&token&&z=9",
        ),
        # names that only contain a secret word are not redacted unless configured
        ("my_token=1&session=2", (), "my_token=1&session=2"),
        ("my_token=1&session=2", ("session",), "my_token=1&session=[REDACTED]"),
    ],
)
def test_query_redaction(query: str, extra: tuple[str, ...], expected: str) -> None:
    options = AgentOptions(output="/tmp/x", redact_query_parameters=extra)
    assert Redaction.of(options).query(query) == expected


def test_header_redaction() -> None:
    headers: CIMultiDict[str] = CIMultiDict(
        [
            ("Authorization", "Bearer t"),
            ("X-Trace", "a"),
            ("x-trace", "b"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("X-Tenant-Secret", "s"),
            ("X-Api-Key", "k"),
        ]
    )
    default = Redaction.of(AgentOptions(output="/tmp/x"))
    assert default.headers_of(headers) == {
        "authorization": "[REDACTED]",
        "x-trace": "a, b",
        "set-cookie": "[REDACTED]",
        "x-tenant-secret": "s",
        "x-api-key": "[REDACTED]",
    }
    extra = Redaction.of(AgentOptions(output="/tmp/x", redact_headers=("x-tenant-secret",)))
    assert extra.headers_of(headers)["x-tenant-secret"] == "[REDACTED]"


def test_safe_name() -> None:
    assert [safe_name(n) for n in ("iris", "v1.0", "a/b", "..", "", " x ")] == [
        "iris",
        "v1.0",
        "a_b",
        "unknown",
        "unknown",
        "x",
    ]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="inferops")
    register_agent(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_command_line_defaults_and_environment() -> None:
    args = parse(["agent", "--output", "obs://b/collect"])
    opts = options_from_args(
        args, {"INFEROPS_SERVICE": "svc", "INFEROPS_VERSION": "v2", "POD_NAME": "svc-v2-abc"}
    )
    assert opts == AgentOptions(
        output="obs://b/collect", service="svc", version="v2", pod="svc-v2-abc"
    )
    assert (
        opts.port,
        opts.upstream,
        opts.sample_ratio,
        opts.flush_seconds,
        opts.flush_lines,
        opts.max_buffer_lines,
        opts.max_body_bytes,
    ) == (8081, "http://127.0.0.1:8080", 1.0, 10.0, 1000, 10000, 16 * 1024 * 1024)
    args = parse(
        [
            "agent",
            "--output",
            "/tmp/x",
            "--port",
            "9000",
            "--upstream",
            "http://m:1",
            "--sample-ratio",
            "0.25",
            "--service",
            "s",
            "--version",
            "v",
            "--pod",
            "p",
            "--flush-seconds",
            "2.5",
            "--flush-lines",
            "7",
            "--max-buffer-lines",
            "9",
            "--max-body-bytes",
            "100",
        ]
    )
    opts = options_from_args(args, {"INFEROPS_SERVICE": "ignored"})
    assert (
        opts.port,
        opts.upstream,
        opts.sample_ratio,
        opts.service,
        opts.version,
        opts.pod,
        opts.flush_seconds,
        opts.flush_lines,
        opts.max_buffer_lines,
        opts.max_body_bytes,
    ) == (9000, "http://m:1", 0.25, "s", "v", "p", 2.5, 7, 9, 100)


@pytest.mark.parametrize(
    "argv",
    [
        ["agent"],
        ["agent", "--output", "x", "--sample-ratio", "1.5"],
        ["agent", "--output", "x", "--sample-ratio", "-0.1"],
        ["agent", "--output", "x", "--flush-lines", "0"],
        ["agent", "--output", "x", "--flush-seconds", "0"],
    ],
)
def test_command_line_rejects_bad_values(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(argv)


def test_https_output_is_refused() -> None:
    with pytest.raises(Exception, match="cannot write"):
        build_app(AgentOptions(output="https://example.invalid/x"))
