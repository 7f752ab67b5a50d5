"""What traffic control costs, each part against a baseline measured in the same run:

1. metrics: nginx alone versus nginx logging every request to the router agent, in front
   of the same upstream: throughput, latency, and the CPU time of nginx and the agent per
   request (from /proc);
2. shadow: client latency without a shadow versus with a shadow that takes 1 s to answer
   (mirrored through the agent), and versus the same shadow with paired capture, at a
   steady request rate (open loop) and as fast as the machine goes (closed loop); and the
   floor of nginx's own `mirror` (the copy answered inside nginx, no agent);
3. shadow behind a model: the same at a steady rate, in front of an upstream that takes
   5 ms, as a small model does;
4. sticky: 10,000 keys asked 5 times each through a 70/30 sticky split: keys answered by
   more than one version, and the shares.

Targets are measured in alternating rounds after a warm-up, so that a noisy machine
weighs on all of them alike. Upstreams are small aiohttp servers on loopback
(tests/router_support.py), nginx runs the operator's generated config.

    python bench/traffic_bench.py --duration 20 --concurrency 16 --out /tmp/traffic.json

This is a benchmark, not a test: nothing under tests/ runs it and it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inferops.contract.router import Pairing
from inferops.resources.nginx import Backend, Routing
from tests.router_support import (
    Router,
    running_router,
    running_upstreams,
    scrape,
)

A, Z = "iris:1.0.0", "iris:2.0.0"
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # process group -> CPU seconds

    def add(self, other: Run) -> None:
        self.ok += other.ok
        self.errors += other.errors
        self.seconds += other.seconds
        self.latencies += other.latencies
        for name, value in other.cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + value


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process, 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(entry.name))
    return out


def groups(router: Router) -> dict[str, list[int]]:
    """The processes whose CPU a request through this router costs."""
    found = {"nginx": [router.process.pid, *_children(router.process.pid)]}
    if router.agent_pid is not None:
        found["agent"] = [router.agent_pid]
    return found


def cpu_now(processes: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(_cpu_seconds(p) for p in pids) for name, pids in processes.items()}


async def post(session: aiohttp.ClientSession, url: str, body: bytes, run: Run) -> None:
    """One request, its latency (send to last byte) counted in `run` when it is a 200."""
    start = time.perf_counter()
    try:
        async with session.post(url, data=body) as response:
            await response.read()
            good = response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        good = False
    if good:
        run.latencies.append(time.perf_counter() - start)
        run.ok += 1
    else:
        run.errors += 1


async def load(url: str, seconds: float, concurrency: int, body: bytes) -> Run:
    run = Run()
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < stop:
                await post(session, url, body, run)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.seconds = time.perf_counter() - began
    return run


async def paced(url: str, seconds: float, rate: float, body: bytes) -> Run:
    """Open loop: one request every 1/rate s whatever the answers, each on a free
    keep-alive connection; latency from its send to its last byte."""
    run = Run()
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.perf_counter()
        tasks = []
        for i in range(int(seconds * rate)):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(session, url, body, run)))
        await asyncio.gather(*tasks)
        run.seconds = time.perf_counter() - began
    return run


def measure(
    routers: dict[str, Router], args: argparse.Namespace, label: str, rate: float | None = None
) -> dict[str, dict[str, Any]]:
    """Closed loop (`args.concurrency` connections back to back), or open loop at `rate`."""
    body = json.dumps({"data": {"req_data": [{"input_1": 5.1}]}}).encode()

    def drive(url: str, seconds: float) -> Run:
        if rate is not None:
            return asyncio.run(paced(url, seconds, rate, body))
        return asyncio.run(load(url, seconds, args.concurrency, body))

    warm = {name: drive(router.url, args.warmup).ok for name, router in routers.items()}
    totals = {name: Run() for name in routers}
    processes = {name: groups(r) for name, r in routers.items()}
    for number in range(args.rounds):
        for name, router in routers.items():
            before = cpu_now(processes[name])
            run = drive(router.url, args.duration / args.rounds)
            after = cpu_now(processes[name])
            run.cpu = {k: after[k] - before[k] for k in after}
            totals[name].add(run)
            print(f"  {label} round {number + 1} {name:<14} {run.ok / run.seconds:9,.0f} req/s")
    return {name: summary(run) | {"warmup_requests": warm[name]} for name, run in totals.items()}


def summary(run: Run) -> dict[str, Any]:
    latencies = run.latencies or [float("nan")]
    out: dict[str, Any] = {
        "requests": run.ok,
        "errors": run.errors,
        "rps": round(run.ok / run.seconds, 1) if run.seconds else 0.0,
        "p50_ms": round(1000 * percentile(latencies, 50), 3),
        "p99_ms": round(1000 * percentile(latencies, 99), 3),
    }
    for name, seconds in run.cpu.items():
        out[f"{name}_cpu_us_per_request"] = round(seconds / max(run.ok, 1) * 1e6, 1)
    return out


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def metrics_part(args: argparse.Namespace, stack: ExitStack) -> dict[str, Any]:
    up = stack.enter_context(running_upstreams("one"))
    backends = [Backend("one", up["one"], 100, A)]
    plain = stack.enter_context(running_router(backends, worker_processes="1"))
    logged = stack.enter_context(running_router(backends, worker_processes="1", agent=True))
    results = measure({"nginx": plain, "nginx+metrics": logged}, args, "metrics")
    counted = scrape(logged).get(
        f'inferops_router_requests_total{{code="2xx",route="split",version="{A}"}}', 0
    )
    base, with_metrics = results["nginx"], results["nginx+metrics"]
    router_cpu = with_metrics["nginx_cpu_us_per_request"] + with_metrics.get(
        "agent_cpu_us_per_request", 0.0
    )
    sent = with_metrics["requests"] + with_metrics["warmup_requests"]
    return {
        "results": results,
        # every request of the warm-up and the rounds, as the agent counted them
        "requests_sent": sent,
        "requests_counted": counted,
        "lost_log_lines": sent - counted,
        "ratios": {
            "rps": ratio(with_metrics["rps"], base["rps"]),
            "p50": ratio(with_metrics["p50_ms"], base["p50_ms"]),
            "p99": ratio(with_metrics["p99_ms"], base["p99_ms"]),
            "router_cpu_per_request": ratio(router_cpu, base["nginx_cpu_us_per_request"]),
        },
        "added_cpu_us_per_request": round(router_cpu - base["nginx_cpu_us_per_request"], 1),
    }


def shadow_part(args: argparse.Namespace, stack: ExitStack) -> dict[str, Any]:
    up = stack.enter_context(running_upstreams("one"))
    slow = stack.enter_context(running_upstreams("slow-shadow", "quick-shadow"))
    production = Backend("one", up["one"], 100, A)
    shadow = Backend("slow-shadow", slow["slow-shadow"], 0, Z, shadow_percent=args.sample)
    quick = Backend("quick-shadow", slow["quick-shadow"], 0, Z, shadow_percent=args.sample)
    output = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="traffic-pairs-")))
    routers = {
        "no shadow": stack.enter_context(running_router([production], agent=True)),
        # the same copies to a shadow that answers at once: what mirroring itself costs
        "quick shadow": stack.enter_context(running_router([production, quick])),
        "shadow": stack.enter_context(running_router([production, shadow])),
        "shadow+pairs": stack.enter_context(
            running_router(
                [production, shadow], pairing=Pairing(output=f"file://{output}", sample_ratio=0.0)
            )
        ),
        "mirror floor": answered_inside_nginx(
            stack.enter_context(running_router([production, quick]))
        ),
    }
    closed = measure(routers, args, "shadow, saturated")
    results = measure(routers, args, f"shadow, {args.rate:g} req/s", rate=args.rate)
    mirrored = {}
    for name, router in routers.items():
        metrics = scrape(router)
        mirrored[name] = {
            "answered": metrics.get(
                f'inferops_router_requests_total{{code="2xx",route="shadow",version="{Z}"}}', 0
            ),
            "dropped_busy": metrics.get(
                f'inferops_router_shadow_dropped_total{{reason="busy",version="{Z}"}}', 0
            ),
        }
    return {
        "sample_percent": args.sample,
        "shadow_latency_s": 1.0,
        # at a steady rate (what a router in service sees): the shadow's effect on latency
        "paced": {"rate": args.rate, "results": results, "ratios": _ratios(results)},
        # as fast as the machine goes: what the copies cost in CPU and throughput
        "saturated": {
            "concurrency": args.concurrency,
            "results": closed,
            "ratios": _ratios(closed),
        },
        # both loads: copies answered by the shadow, and dropped (more than 64 waiting)
        "shadow_requests": mirrored,
    }


def answered_inside_nginx(router: Router) -> Router:
    """The router with its mirror subrequests answered 204 by nginx itself: not a config
    the operator writes, but the floor of what nginx's `mirror` costs, with no copy
    handed to the agent."""
    path = router.runtime_dir / "nginx.conf"
    config = path.read_text(encoding="utf-8")
    doctored = re.sub(r"proxy_pass http://inferops_mirror;", "return 204;", config)
    if doctored == config:
        raise RuntimeError("no mirror location in the router's config")
    path.write_text(doctored, encoding="utf-8")
    router.process.send_signal(signal.SIGHUP)
    time.sleep(1.0)  # the old workers finish; the warm-up runs on the new ones
    return router


def model_part(args: argparse.Namespace, stack: ExitStack) -> dict[str, Any]:
    """The 1 s shadow in front of production that takes 5 ms, at the steady rate: the
    copy is handed over while production thinks."""
    up = stack.enter_context(running_upstreams("model"))
    slow = stack.enter_context(running_upstreams("slow-shadow"))
    production = Backend("model", up["model"], 100, A)
    shadow = Backend("slow-shadow", slow["slow-shadow"], 0, Z, shadow_percent=args.sample)
    routers = {
        "no shadow": stack.enter_context(running_router([production], agent=True)),
        "shadow": stack.enter_context(running_router([production, shadow])),
    }
    results = measure(routers, args, f"model, {args.rate:g} req/s", rate=args.rate)
    return {
        "production_latency_s": 0.005,
        "rate": args.rate,
        "results": results,
        "ratios": {"shadow": _versus(results["shadow"], results["no shadow"])},
    }


def _versus(r: dict[str, Any], base: dict[str, Any]) -> dict[str, float | None]:
    return {
        "p50": ratio(r["p50_ms"], base["p50_ms"]),
        "p99": ratio(r["p99_ms"], base["p99_ms"]),
        "rps": ratio(r["rps"], base["rps"]),
    }


def _ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Each against no shadow; and the 1 s shadow against the quick one: how much the
    shadow's own latency reaches the client."""

    out = {
        name: _versus(r, results["no shadow"]) for name, r in results.items() if name != "no shadow"
    }
    out["shadow vs quick shadow"] = _versus(results["shadow"], results["quick shadow"])
    out["shadow vs mirror floor"] = _versus(results["shadow"], results["mirror floor"])
    return out


def sticky_part(stack: ExitStack, keys: int = 10_000, repeats: int = 5) -> dict[str, Any]:
    up = stack.enter_context(running_upstreams("one", "two"))
    backends = [Backend("one", up["one"], 70, A), Backend("two", up["two"], 30, Z)]
    router = stack.enter_context(
        running_router(backends, routing=Routing(sticky_header="X-User"), worker_processes="2")
    )
    answered: dict[str, set[str]] = defaultdict(set)

    async def run() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:
            queue = [f"user-{k}" for k in range(keys) for _ in range(repeats)]

            async def worker() -> None:
                while queue:
                    key = queue.pop()
                    async with session.get(router.url, headers={"X-User": key}) as r:
                        answered[key].add(await r.text())

            await asyncio.gather(*(worker() for _ in range(32)))

    asyncio.run(run())
    shares = Counter(next(iter(v)) for v in answered.values() if len(v) == 1)
    return {
        "keys": keys,
        "requests_per_key": repeats,
        "keys_on_more_than_one_version": sum(len(v) > 1 for v in answered.values()),
        "share_percent": {k: round(100 * n / keys, 2) for k, n in sorted(shares.items())},
        "ratios_asked": {"one": 70, "two": 30},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="measured s per target")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per target first")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of the targets")
    parser.add_argument("--sample", type=int, default=10, help="the shadow's samplePercent")
    parser.add_argument("--rate", type=float, default=500.0, help="req/s of the paced load")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    document: dict[str, Any] = {
        "benchmark": "traffic_bench",
        "settings": vars(args) | {"out": str(args.out) if args.out else None},
        "environment": {
            "python": platform.python_version(),
            "aiohttp": aiohttp.__version__,
            "cpus": os.cpu_count(),
        },
    }
    with ExitStack() as stack:
        document["metrics"] = metrics_part(args, stack)
    with ExitStack() as stack:
        document["shadow"] = shadow_part(args, stack)
    with ExitStack() as stack:
        document["shadow_behind_model"] = model_part(args, stack)
    with ExitStack() as stack:
        document["sticky"] = sticky_part(stack)
    parts = ("metrics", "shadow", "shadow_behind_model", "sticky")
    print(json.dumps({k: document[k] for k in parts}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
