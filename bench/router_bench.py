"""What the nginx router costs: throughput and latency through it versus straight to the model.

One `inferops model-server` serves the iris example on loopback. nginx runs the config the
operator generates (`inferops.resources.nginx.nginx_config`, one backend at 100%) in front of
it. The same Python load generator (aiohttp, N concurrent keep-alive connections, a fixed
duration, the seed request body) measures both targets in the same run, alternating
direct/router for each round after a warm-up.

    python bench/router_bench.py --duration 10 --concurrency 32 --out /tmp/router-bench.json

This is a benchmark, not a test: nothing under tests/ runs it and it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from inferops.demo import (
    MODEL_DIR,
    SEED_BODY,
    DemoError,
    examples_dir,
    model_server,
    nginx_binary,
    nginx_router,
)
from inferops.resources.nginx import VERSION_HEADER, Backend, nginx_config

BACKEND = "iris-bench-iris-1-0-0"


@dataclass
class Run:
    """Requests completed by one target during the measured windows."""

    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] | None = None  # seconds, of the 200 answers

    def add(self, other: Run) -> None:
        self.ok += other.ok
        self.errors += other.errors
        self.seconds += other.seconds
        self.latencies = (self.latencies or []) + (other.latencies or [])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def load(url: str, seconds: float, concurrency: int, expect_backend: bool) -> Run:
    """`concurrency` workers posting the seed body back to back until `seconds` are up."""
    run = Run(latencies=[])
    assert run.latencies is not None
    latencies = run.latencies
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    body = json.dumps(SEED_BODY).encode()
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            while (start := time.perf_counter()) < stop:
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        good = response.status == 200 and (
                            not expect_backend or response.headers.get(VERSION_HEADER) == BACKEND
                        )
                except (aiohttp.ClientError, TimeoutError):
                    good = False
                if good:
                    latencies.append(time.perf_counter() - start)
                    run.ok += 1
                else:
                    run.errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.seconds = time.perf_counter() - began
    return run


def summary(run: Run) -> dict[str, Any]:
    latencies = run.latencies or [float("nan")]
    return {
        "requests": run.ok,
        "errors": run.errors,
        "seconds": round(run.seconds, 3),
        "rps": round(run.ok / run.seconds, 1) if run.seconds else 0.0,
        "p50_ms": round(1000 * percentile(latencies, 50), 3),
        "p99_ms": round(1000 * percentile(latencies, 99), 3),
        "mean_ms": round(1000 * sum(latencies) / len(latencies), 3),
    }


def nginx_version(binary: str) -> str:
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    return (result.stderr or result.stdout).strip().removeprefix("nginx version: ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per target (all rounds)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent connections")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per target first")
    parser.add_argument("--rounds", type=int, default=5, help="direct/router alternations")
    parser.add_argument("--worker-processes", default="1", help="nginx worker_processes")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    binary = nginx_binary()
    if binary is None:
        print("router_bench: nginx is not installed (apt-get install nginx-light)", file=sys.stderr)
        return 2
    try:
        model = examples_dir() / MODEL_DIR
    except DemoError as exc:
        print(f"router_bench: {exc}", file=sys.stderr)
        return 2

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="inferops-bench-")))
        work.chmod(0o755)  # nginx workers run as another user when started as root
        address = stack.enter_context(model_server(model, work / "model-server.log"))

        def config(listen: str, runtime_dir: str) -> str:
            return nginx_config(
                [Backend(BACKEND, address, 100)],
                listen=listen,
                runtime_dir=runtime_dir,
                worker_processes=args.worker_processes,
            )

        port = stack.enter_context(nginx_router(config, work))
        targets = {"direct": (f"http://{address}/", False)}
        targets["router"] = (f"http://127.0.0.1:{port}/", True)
        print(
            f"model server {address}, router 127.0.0.1:{port}; {args.concurrency} connections; "
            f"{args.duration:g} s per target in {args.rounds} rounds after a "
            f"{args.warmup:g} s warm-up"
        )
        for url, expect in targets.values():
            asyncio.run(load(url, args.warmup, args.concurrency, expect))
        totals = {name: Run(latencies=[]) for name in targets}
        for number in range(args.rounds):
            seconds = args.duration / args.rounds
            for name, (url, expect) in targets.items():
                run = asyncio.run(load(url, seconds, args.concurrency, expect))
                totals[name].add(run)
                print(f"  round {number + 1} {name:<6} {run.ok / run.seconds:9,.0f} req/s")

    results = {name: summary(run) for name, run in totals.items()}
    direct, router = results["direct"], results["router"]
    ratios = {
        "rps": round(router["rps"] / direct["rps"], 3) if direct["rps"] else None,
        "p50": round(router["p50_ms"] / direct["p50_ms"], 3) if direct["p50_ms"] else None,
        "p99": round(router["p99_ms"] / direct["p99_ms"], 3) if direct["p99_ms"] else None,
    }
    print()
    print(f"{'target':<8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'requests':>10}{'errors':>8}")
    for name, r in results.items():
        print(
            f"{name:<8}{r['rps']:>10,.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
            f"{r['requests']:>10,}{r['errors']:>8}"
        )
    print(f"router / direct: rps {ratios['rps']}, p50 {ratios['p50']}, p99 {ratios['p99']}")
    if args.out:
        document = {
            "benchmark": "router_bench",
            "settings": {
                "duration": args.duration,
                "concurrency": args.concurrency,
                "warmup": args.warmup,
                "rounds": args.rounds,
                "worker_processes": args.worker_processes,
                "client": "python aiohttp, keep-alive",
                "body": SEED_BODY,
            },
            "environment": {
                "nginx": nginx_version(binary),
                "python": platform.python_version(),
                "aiohttp": aiohttp.__version__,
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
            },
            "results": results,
            "ratios": ratios,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0 if all(r["errors"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
