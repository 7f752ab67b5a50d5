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
from yarl import URL

from inferops.runtime import model_server
from inferops.runtime.agent import (
    COLLECTOR_KEY,
    HEALTH_PATH,
    AgentOptions,
    Collector,
    LineBuffer,
    build_app,
    capture_body,
    options_from_args,
    safe_name,
)
from inferops.runtime.agent import register as register_agent
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
    "status",
    "response",
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


def test_oversize_body_is_a_413_and_never_reaches_the_model(tmp_path: Path) -> None:
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

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
                for _ in range(4):
                    yield b"y" * 1000

            response = await via.post("/echo", data=chunks())
            assert response.status == 413
            assert hits == ["/echo"] and len(c.buffer) == 1

    run(test)


def test_large_bodies_are_proxied_but_recorded_as_null(tmp_path: Path) -> None:
    async def test() -> None:
        async with (
            upstream_server(echo_app()) as echo,
            agent(options(base_url(echo), str(tmp_path), max_capture_bytes=100)) as (
                via,
                collector,
            ),
        ):
            response = await via.post("/echo", json={"text": "z" * 200})
            assert response.status == 201 and len(await response.read()) > 200
            [line] = records(collector)
            assert line["request"] is None and line["response"] is None

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
        (b"x" * 11, "application/octet-stream", "", None),
        (gzip.compress(b'{"g": 1}'), "application/json", "gzip", {"g": 1}),
        (gzip.compress(b"y" * 50), "text/plain", "gzip", None),  # inflates over the cap
        (b"\x00br", "application/json", "br", {"base64": base64.b64encode(b"\x00br").decode()}),
    ],
)
def test_capture_body(body: bytes, content_type: str, encoding: str, expected: Any) -> None:
    assert (
        capture_body(body, content_type, encoding, cap=10 if body == b"x" * 11 else 40) == expected
    )


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
