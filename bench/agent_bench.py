"""What the data-collection agent costs on large and streamed answers, next to a direct
connection to the same model in the same run.

On loopback only, this starts a small streaming model (aiohttp, in this process), moto (an
S3-API server) and `inferops agent` as its own process in front of the model, writing to
moto, and then measures:

- `large`: `--large-count` answers of `--large-mb` MB each (sized, streamed in 1 MiB
  writes), all in flight at once, read straight from the model and through the agent:
  seconds and MB/s of each, their ratio, and the agent's resident memory (VmRSS sampled
  every 20 ms, and the kernel's peak VmHWM) against its baseline;
- `sse`: an SSE answer whose second event comes `--sse-gap` seconds after the first,
  `--sse-rounds` times: the median time to the first event straight and through the agent;
- `flush`: `--flush-seconds` of POSTs of `--body-mb` MB JSON bodies (an echoing model,
  `--flush-concurrency` in flight) through the agent into healthy storage: requests
  answered, lines written, dropped and still buffered at the end (the agent's own stats),
  and the peak RSS.

    .venv/bin/python bench/agent_bench.py --out /tmp/agent-bench.json

`PYTHONPATH=<checkout>/operator` runs the agent of another checkout (the agent process
inherits the environment), which is how bench/README.md compares before and after.
A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.s3server import CREDENTIALS, client, free_port, s3_server

MB = 1_000_000
BLOCK = bytes(range(256)) * 4096  # 1 MiB


def model_app(sse_gap: float) -> web.Application:
    async def large(request: web.Request) -> web.StreamResponse:
        size = int(request.query["bytes"])
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        sent = 0
        while sent < size:
            part = BLOCK[: size - sent]
            await response.write(part)
            sent += len(part)
        return response

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await asyncio.sleep(sse_gap)
        await response.write(b"data: second\n\n")
        return response

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), content_type="application/json")

    app = web.Application(client_max_size=64 * MB)
    app.router.add_get("/large", large)
    app.router.add_get("/events", events)
    app.router.add_post("/echo", echo)
    return app


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class RssSampler:
    """The largest VmRSS of a process seen while `running` (every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_kib(self.pid))
            await asyncio.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self.peak = rss_kib(self.pid)
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def read_all(session: aiohttp.ClientSession, url: str) -> int:
    size = 0
    async with session.get(url) as response:
        async for part in response.content.iter_any():
            size += len(part)
    return size


async def large(session: aiohttp.ClientSession, base: str, count: int, size: int) -> dict[str, Any]:
    started = time.perf_counter()
    sizes = await asyncio.gather(
        *(read_all(session, f"{base}/large?bytes={size}") for _ in range(count))
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 3),
        "mb_per_s": round(sum(sizes) / MB / seconds, 1),
        "complete": all(s == size for s in sizes),
    }


async def first_event_ms(session: aiohttp.ClientSession, base: str) -> float:
    started = time.perf_counter()
    async with session.get(f"{base}/events") as response:
        await response.content.readuntil(b"\n\n")
        first = time.perf_counter() - started
        await response.read()
    return first * 1000


async def flush_load(
    session: aiohttp.ClientSession, base: str, args: argparse.Namespace, rate: float | None
) -> int:
    """POSTs `--body-mb` MB JSON bodies for `--flush-seconds`: `rate` a second (at most
    `--flush-concurrency` in flight), or back to back on `--flush-concurrency` connections
    when `rate` is None."""
    body = json.dumps({"data": "x" * int(args.body_mb * MB - 11)}).encode()
    deadline = time.monotonic() + args.flush_seconds
    slots = asyncio.Semaphore(args.flush_concurrency)
    answered = 0

    async def post() -> None:
        nonlocal answered
        async with (
            slots,
            session.post(
                f"{base}/echo", data=body, headers={"Content-Type": "application/json"}
            ) as response,
        ):
            await response.read()
            answered += response.status == 200

    if rate is None:

        async def worker() -> None:
            while time.monotonic() < deadline:
                await post()

        await asyncio.gather(*(worker() for _ in range(args.flush_concurrency)))
        return answered
    tasks = []
    start = time.monotonic()
    for i in range(int(args.flush_seconds * rate)):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        tasks.append(asyncio.create_task(post()))
    await asyncio.gather(*tasks)
    return answered


async def storage_mb_per_s(endpoint: str, mb: int = 32) -> float:
    """How fast the S3 server takes one `mb` MB object right now (the agent's upload size
    at the default buffer bound is about half of 64 MiB)."""
    s3 = client(endpoint)
    data = b"x" * (mb * MB)
    started = time.perf_counter()
    await asyncio.to_thread(s3.put_object, Bucket="bench", Key="probe", Body=data)
    return round(mb / (time.perf_counter() - started), 1)


async def flush(
    session: aiohttp.ClientSession,
    agent: str,
    pid: int,
    args: argparse.Namespace,
    rate: float | None,
) -> dict[str, Any]:
    async with session.get(agent + "/inferops-agent/stats") as response:
        before = await response.json()
    with RssSampler(pid) as sampler:
        answered = await flush_load(session, agent, args, rate)
        for _ in range(int(args.settle / 0.1)):  # let the last size-triggered write end
            async with session.get(agent + "/inferops-agent/stats") as response:
                stats = await response.json()
            if stats["bufferedBytes"] < 32 * 1024 * 1024:
                break
            await asyncio.sleep(0.1)
    return {
        "rate_per_s": rate,
        "answered": answered,
        "written_lines": stats["writtenLines"] - before["writtenLines"],
        "dropped": stats["dropped"] - before["dropped"],
        "buffered": stats["buffered"],
        "files": stats["writtenFiles"] - before["writtenFiles"],
        "agent_rss_peak_mib": round(sampler.peak / 1024, 1),
    }


async def start_agent(model: str, s3: str, out: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        **CREDENTIALS,
        "INFEROPS_S3_ENDPOINT": s3,
        "INFEROPS_SERVICE": "bench",
        "INFEROPS_VERSION": "v1",
        "POD_NAME": "agent-0",
    }
    log = open(out, "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inferops.cli",
            "agent",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--upstream",
            model,
            "--output",
            "s3://bench/collected/",
        ],
        env=env,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(base + "/inferops-agent/healthz") as response:
                    if response.status == 200:
                        return process, base
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    process.kill()
    raise SystemExit(f"the agent did not start; see {out}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    runner = web.AppRunner(model_app(args.sse_gap), access_log=None)
    await runner.setup()
    model_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", model_port).start()
    model = f"http://127.0.0.1:{model_port}"
    results: dict[str, Any] = {}
    with s3_server() as endpoint, tempfile.TemporaryDirectory() as tmp:
        client(endpoint).create_bucket(Bucket="bench")
        process, agent = await start_agent(model, endpoint, f"{tmp}/agent.log")
        timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                baseline = rss_kib(process.pid)
                size = int(args.large_mb * MB)
                direct = await large(session, model, args.large_count, size)
                with RssSampler(process.pid) as sampler:
                    proxied = await large(session, agent, args.large_count, size)
                results["large"] = {
                    "direct": direct,
                    "agent": proxied,
                    "time_ratio": round(proxied["seconds"] / direct["seconds"], 2),
                    "agent_rss_mib": {
                        "baseline": round(baseline / 1024, 1),
                        "peak_sampled": round(sampler.peak / 1024, 1),
                        "passed_through_mb": args.large_count * args.large_mb,
                    },
                }
                sse: dict[str, list[float]] = {"direct": [], "agent": []}
                for _ in range(args.sse_rounds):
                    sse["direct"].append(await first_event_ms(session, model))
                    sse["agent"].append(await first_event_ms(session, agent))
                results["sse"] = {
                    "gap_s": args.sse_gap,
                    "first_event_ms_median": {
                        k: round(statistics.median(v), 2) for k, v in sse.items()
                    },
                }
                results["large"]["agent_rss_mib"]["peak_hwm"] = round(
                    rss_kib(process.pid, "VmHWM") / 1024, 1
                )
                results["storage_mb_per_s"] = await storage_mb_per_s(endpoint)
                results["flush_paced"] = await flush(
                    session, agent, process.pid, args, args.flush_rate
                )
                results["flush_saturating"] = await flush(session, agent, process.pid, args, None)
        finally:
            process.terminate()
            process.wait(timeout=30)
            await runner.cleanup()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large-count", type=int, default=5)
    parser.add_argument("--large-mb", type=float, default=100)
    parser.add_argument("--sse-gap", type=float, default=1.0, help="seconds between the events")
    parser.add_argument("--sse-rounds", type=int, default=5)
    parser.add_argument("--flush-seconds", type=float, default=30.0)
    parser.add_argument(
        "--flush-rate", type=float, default=8.0, help="requests/s of the paced flush run"
    )
    parser.add_argument("--flush-concurrency", type=int, default=4)
    parser.add_argument(
        "--settle", type=float, default=10.0, help="longest wait for the last write, seconds"
    )
    parser.add_argument("--body-mb", type=float, default=1.0)
    parser.add_argument("--out", help="also write the results here as JSON")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    results["settings"] = vars(args) | {"out": None}
    results["environment"] = {
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "cpus": os.cpu_count(),
        "agent": os.environ.get("PYTHONPATH", "this checkout"),
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
