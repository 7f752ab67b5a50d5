"""The batch worker over object storage that is a few milliseconds away: I/O threads.

Every source costs a read and a result write at the object store; with a store tens of
milliseconds away these calls, not the model, bound the worker unless enough of them run at
once. This runs, on loopback only:

- moto (an S3-API server) behind a small proxy that delays every request by `--latency-ms`;
- one `inferops model-server` for the iris example;
- the real batch worker over `--files` one-row CSV files in that store, with
  `--concurrency` requests in flight, once with 10 I/O threads (botocore's pool size, the
  worker's old fixed number) and once with the default for that concurrency
  (`io_threads_default`: two per request in flight), alternating in `--rounds` rounds.

    python bench/batch_s3_bench.py --latency-ms 50 --files 300 --concurrency 16 --rounds 1

It prints files/second for both and their ratio. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from inferops.contract.batch_worker import config_from_service, io_threads_default
from inferops.demo import MODEL_DIR, examples_dir, model_server
from inferops.worker.runner import run_worker

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
}
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **CREDENTIALS},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def delaying_proxy(upstream: str, latency: float) -> Iterator[str]:
    """An HTTP proxy on loopback that waits `latency` seconds before each request."""
    loop = asyncio.new_event_loop()
    port = free_port()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def forward(request: web.Request) -> web.Response:
        await asyncio.sleep(latency)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        session: aiohttp.ClientSession = state["session"]
        async with session.request(
            request.method,
            upstream + request.rel_url.raw_path_qs,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as answer:
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
            return web.Response(status=answer.status, body=body, headers=kept)

    async def start() -> web.AppRunner:
        state["session"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=False
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    def serve() -> None:
        asyncio.set_event_loop(loop)
        state["runner"] = loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the proxy did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:

        async def stop() -> None:
            await state["session"].close()
            await state["runner"].cleanup()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def upload_inputs(endpoint: str, files: int) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="bench")
    for i in range(files):
        s3.put_object(Bucket="bench", Key=f"in/{i:05d}.csv", Body=b"5.1,3.5,1.4,0.2\n")


def run_once(proxy: str, url: str, task: str, args: argparse.Namespace, threads: int) -> float:
    app = yaml.safe_load((examples_dir() / "iris-application.yaml").read_text())
    service = {
        "spec": {
            "application": "iris",
            "version": "1.0.0",
            "inputPath": "s3://bench/in/",
            "outputPath": f"s3://bench/out-{task}/",
            "specification": "cpu.2u4g",
            "concurrency": args.concurrency,
        }
    }
    config = config_from_service(
        service, app, url, task, s3_endpoint=proxy, s3_region="us-east-1", io_threads=threads
    )
    began = time.perf_counter()
    summary = asyncio.run(run_worker(config))
    seconds = time.perf_counter() - began
    if summary.failed or summary.total != args.files:
        raise RuntimeError(f"{task}: {summary.to_dict()}")
    return args.files / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=50.0, help="added per S3 request")
    parser.add_argument("--files", type=int, default=300, help="one-row CSV files")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)
    new = io_threads_default(args.concurrency)
    rates: dict[str, list[float]] = {"10 threads": [], f"{new} threads (default)": []}
    with ExitStack() as stack:
        endpoint = stack.enter_context(moto_server())
        proxy = stack.enter_context(delaying_proxy(endpoint, args.latency_ms / 1000))
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="batch-s3-bench-")))
        url = "http://" + stack.enter_context(
            model_server(examples_dir() / MODEL_DIR, work / "model.log")
        )
        upload_inputs(endpoint, args.files)
        for number in range(args.rounds):
            for measured, threads in zip(rates.values(), (10, new), strict=True):
                task = f"r{number}t{threads}"
                measured.append(round(run_once(proxy, url, task, args, threads), 1))
    best = {name: max(values) for name, values in rates.items()}
    names = list(best)
    result = {
        "files_per_second": rates,
        "ratio_default_over_10": round(best[names[1]] / best[names[0]], 2),
        "settings": vars(args),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
