"""Time from breach to rollback: a bad version (a fifth of its answers are 500) enters at
its first step under steady traffic; how long until its last answer reaches a client.

Real nginx and the real router agent (tests/router_support.py) stand in for a router pod;
the operator's own code decides: the agent's /metrics text parsed by
`reconcile.router_metrics`, the step's window, `reconcile.rollout.decide`, looked at every
`POLL_SECONDS` as a pass does while a step bakes. A step's new config is a reload here
(in a cluster it rolls the router pods, which adds their start to the second phase; the
end-to-end test prints that time on the real node). Each run reports:

- gather: from the first request the bad version gets to the pass that rolls back;
- apply: from that decision to the bad version's last answer;
- and their total, over several runs (min, median, max).

    python bench/rollout_bench.py --runs 5 --rate 200 --out /tmp/rollout.json

This is a benchmark, not a test: nothing under tests/ runs it and it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inferops.api.rollout import Rollout
from inferops.reconcile.rollout import POLL_SECONDS, Reading, decide
from inferops.reconcile.router_metrics import Counts, parse, window
from inferops.resources.nginx import Backend
from tests.router_support import Router, reload, running_router, running_upstreams

GOOD, BAD = "iris:1.0.0", "iris:2.0.0"


class Load:
    """Steady requests; remembers when the bad version answered first and last."""

    def __init__(self, url: str, rate: float) -> None:
        self.url, self.rate = url, rate
        self.first_bad: float | None = None
        self.last_bad: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self.run()), daemon=True)

    async def run(self) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
            tasks: set[asyncio.Task[None]] = set()
            began = time.monotonic()
            i = 0
            while not self.stop.is_set():
                delay = began + i / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self.one(session))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            await asyncio.gather(*tasks, return_exceptions=True)

    async def one(self, session: aiohttp.ClientSession) -> None:
        try:
            async with session.post(self.url, data=b"{}") as response:
                await response.read()
                if response.headers.get("X-Inferops-Version") == BAD:
                    now = time.monotonic()
                    self.first_bad = self.first_bad or now
                    self.last_bad = now
        except (aiohttp.ClientError, TimeoutError):
            pass


def counts(router: Router) -> dict[str, Counts]:
    """Each version's split counts, as the agent serves them now."""
    assert router.metrics_port is not None
    with urllib.request.urlopen(router.metrics_url, timeout=5) as r:
        return {k: v.split for k, v in parse(r.read().decode()).items()}


def delta(now: dict[str, Counts], base: dict[str, Counts], version: str) -> Counts:
    a, b = now.get(version, Counts()), base.get(version, Counts())
    return Counts(
        a.requests - b.requests,
        a.errors - b.errors,
        {le: n - b.buckets.get(le, 0.0) for le, n in a.buckets.items()},
    )


def one_run(args: argparse.Namespace) -> dict[str, float]:
    rollout = Rollout.model_validate(
        {
            "version": BAD,
            "steps": [{"percent": args.percent, "bakeSeconds": 300}, {"percent": 100}],
            "gates": {"maxErrorRatePercent": 5, "minRequests": args.min_requests},
        }
    )
    target = {GOOD: 0, BAD: 100}
    with ExitStack() as stack:
        up = stack.enter_context(running_upstreams("good", "flaky"))

        def backends(ratios: dict[str, int]) -> list[Backend]:
            return [
                Backend("good", up["good"], ratios[GOOD], GOOD),
                Backend("flaky", up["flaky"], ratios[BAD], BAD),
            ]

        running = {GOOD: 100, BAD: 0}
        router = stack.enter_context(running_router(backends(running), agent=True))
        load = Load(router.url, args.rate)
        load.thread.start()
        time.sleep(1.0)
        clock = datetime.now(UTC)
        decision = decide(rollout, target, previous=None, running=running, reading=None, now=clock)
        base = counts(router)
        reload(router, backends(decision.ratios))
        status = decision.status
        decided = None
        while decided is None:
            time.sleep(POLL_SECONDS if args.poll is None else args.poll)
            now_counts = counts(router)
            reading = Reading(
                window([delta(now_counts, base, BAD)], 0.95),
                window([delta(now_counts, base, GOOD)], 0.95),
            )
            decision = decide(
                rollout,
                target,
                previous=status,
                running=decision.ratios,
                reading=reading,
                now=datetime.now(UTC),
            )
            status = decision.status
            if status is not None and status.phase == "RolledBack":
                decided = time.monotonic()
                reload(router, backends(decision.ratios))
        time.sleep(3.0)  # the old workers finish; the bad version answers no more
        load.stop.set()
        load.thread.join(10)
        assert load.first_bad is not None
        assert load.last_bad is not None
        return {
            "gather_s": round(decided - load.first_bad, 2),
            "apply_s": round(max(load.last_bad - decided, 0.0), 2),
            "total_s": round(load.last_bad - load.first_bad, 2),
            "error_rate_measured": next(
                g.value for g in (status.gates if status else []) if g.gate == "maxErrorRatePercent"
            ),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--percent", type=int, default=10, help="the first step's percent")
    parser.add_argument("--min-requests", type=int, default=50)
    parser.add_argument("--poll", type=float, default=None, help=f"default {POLL_SECONDS} s")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    runs = []
    for n in range(args.runs):
        result = one_run(args)
        print(f"run {n + 1}: {result}")
        runs.append(result)
    summary: dict[str, Any] = {
        key: {
            "min": min(r[key] for r in runs),
            "median": statistics.median(r[key] for r in runs),
            "max": max(r[key] for r in runs),
        }
        for key in ("gather_s", "apply_s", "total_s")
    }
    document = {
        "benchmark": "rollout_bench",
        "settings": vars(args) | {"out": str(args.out) if args.out else None},
        "poll_seconds": POLL_SECONDS if args.poll is None else args.poll,
        "runs": runs,
        "summary": summary,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
