"""What the batch worker costs: its request rate versus a plain load generator, and its memory.

One `inferops model-server` serves the iris example on loopback. In the same run, alternating
in rounds so that drift in the machine's load hits both alike:

- plain: a minimal aiohttp load generator (N keep-alive connections) posts the seed body
  back to back, R requests per round;
- worker: the real batch worker (`inferops.worker.runner.run_worker`, concurrency N) over
  local CSV files holding the same rows, R requests per round, in two shapes: `rows` (a few
  CSV files of many rows: the per-request path) and `files` (one-row files: the per-source
  path, which also lists, reads and writes a result file and a manifest line per request).

Then peak memory (ru_maxrss of a fresh worker process) for 1,000, 10,000 and 100,000
one-row files.

    python bench/batch_bench.py --concurrency 16 --out /tmp/batch.json

This is a benchmark, not a test: nothing under tests/ runs it and it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from inferops.contract.batch_worker import WorkerConfig, config_from_service
from inferops.demo import MODEL_DIR, DemoError, examples_dir, model_server
from inferops.worker.mapping import build_request
from inferops.worker.runner import run_worker

ROW = ["5.1", "3.5", "1.4", "0.2"]  # the seed's first CSV row
ROWS_PER_FILE = 500
DEFAULT_WORK_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None


def iris_app() -> dict[str, Any]:
    document = yaml.safe_load((examples_dir() / "iris-application.yaml").read_text())
    return dict(document)


def worker_config(
    inputs: Path, output: Path, url: str, task: str, concurrency: int
) -> WorkerConfig:
    service = {
        "spec": {
            "application": "iris",
            "version": "1.0.0",
            "inputPath": str(inputs),
            "outputPath": str(output),
            "specification": "cpu.2u4g",
            "concurrency": concurrency,
        }
    }
    return config_from_service(service, iris_app(), url, task, allow_local_paths=True)


def write_inputs(folder: Path, requests: int, rows_per_file: int) -> None:
    """CSV files with `requests` rows in all, in folders of at most 100 files."""
    line = ",".join(ROW) + "\n"
    for i in range(0, requests, rows_per_file):
        path = folder / f"{i // rows_per_file // 100:04d}" / f"{i:07d}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(line * min(rows_per_file, requests - i))


async def plain(url: str, body: bytes, concurrency: int, requests: int) -> tuple[int, float]:
    """(successful requests, seconds): `concurrency` lanes posting `body` back to back."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": "application/json"}
    left, ok = requests, 0
    async with aiohttp.ClientSession(connector=connector) as session:

        async def lane() -> None:
            nonlocal left, ok
            while left > 0:
                left -= 1
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    ok += response.status == 200

        began = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        return ok, time.perf_counter() - began


async def worker(config: WorkerConfig) -> tuple[int, float]:
    began = time.perf_counter()
    summary = await run_worker(config)
    seconds = time.perf_counter() - began
    if summary.failed:
        raise RuntimeError(f"{summary.failed} sources failed: see {summary.manifests}")
    return summary.total, seconds


def throughput(url: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    config = worker_config(work / "x", work / "y", url, "warm", args.concurrency)
    body = json.dumps(build_request(config.mapping or {}, ROW), separators=(",", ":")).encode()
    shapes = {"rows": ROWS_PER_FILE, "files": 1}
    for shape, per_file in shapes.items():
        write_inputs(work / shape, args.requests, per_file)
    runs: dict[str, list[tuple[int, float]]] = {name: [] for name in ("plain", *shapes)}
    cpu: dict[str, float] = dict.fromkeys(runs, 0.0)  # this process's CPU seconds

    async def measure() -> None:
        await plain(url, body, args.concurrency, args.requests // 4)  # warm-up
        for round_ in range(args.rounds):
            for name, measured in runs.items():
                cpu_began = time.process_time()
                if name == "plain":
                    done, seconds = await plain(url, body, args.concurrency, args.requests)
                else:
                    # A new task ID each round: the same one would resume, with nothing to do.
                    config = worker_config(
                        work / name, work / "out", url, f"{name}{round_}", args.concurrency
                    )
                    sources, seconds = await worker(config)
                    done = args.requests if name == "rows" else sources
                measured.append((done, seconds))
                cpu[name] += time.process_time() - cpu_began

    asyncio.run(measure())
    rates = {
        name: {
            "requests": sum(done for done, _ in measured),
            "seconds": round(sum(seconds for _, seconds in measured), 3),
            "rps": round(sum(d for d, _ in measured) / sum(s for _, s in measured), 1),
            "rps_by_round": [round(done / seconds, 1) for done, seconds in measured],
            # CPU of the client side per request: steadier than req/s on a shared machine.
            "client_cpu_us_per_request": round(cpu[name] / sum(d for d, _ in measured) * 1e6, 1),
        }
        for name, measured in runs.items()
    }
    ratios: dict[str, Any] = {}
    for shape in shapes:
        # Each round's worker run against the plain run just before it: drift in the
        # machine's load between rounds cancels out; the median drops a disturbed round.
        pairs = zip(rates[shape]["rps_by_round"], rates["plain"]["rps_by_round"], strict=True)
        by_round = [w / p for w, p in pairs]
        ratios[f"{shape}/plain"] = round(rates[shape]["rps"] / rates["plain"]["rps"], 3)
        ratios[f"{shape}/plain median of rounds"] = round(statistics.median(by_round), 3)
    return {"results": rates, "ratios": ratios}


def peak_rss_kib() -> int:
    """This process image's peak RSS (VmHWM). Not ru_maxrss: Linux carries that across
    exec, so a child started by this (larger) benchmark process would report its parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux


def memory_child(inputs: str, output: str, url: str, concurrency: int) -> None:
    """Runs in a fresh process: one worker over `inputs`, then prints its peak RSS."""
    config = worker_config(Path(inputs), Path(output), url, "mem", concurrency)
    began = time.perf_counter()
    summary = asyncio.run(run_worker(config))
    peak_kb = peak_rss_kib()
    print(
        json.dumps(
            {
                "sources": summary.total,
                "failed": summary.failed,
                "seconds": round(time.perf_counter() - began, 2),
                "max_rss_mib": round(peak_kb / 1024, 1),
                "manifests": len(summary.manifests),
            }
        )
    )


def memory(url: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    results = {}
    for count in args.memory_inputs:
        folder = work / f"mem{count}"
        write_inputs(folder, count, 1)
        command = [
            sys.executable,
            __file__,
            "--memory-child",
            str(folder),
            str(work / f"mem-out{count}"),
            url,
            "--concurrency",
            str(args.concurrency),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[str(count)] = json.loads(done.stdout)
    # Baseline: the same interpreter with the same imports, doing nothing.
    idle = subprocess.run(
        [sys.executable, __file__, "--idle-child"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {"inputs": results, "idle_max_rss_mib": round(int(idle.stdout) / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=16, help="in-flight requests")
    parser.add_argument("--requests", type=int, default=5000, help="requests per target a round")
    parser.add_argument("--rounds", type=int, default=3, help="plain/worker alternations")
    parser.add_argument(
        "--memory-inputs",
        type=lambda t: [int(x) for x in t.split(",")],
        default=[1_000, 10_000, 100_000],
        help="input counts for the memory runs",
    )
    parser.add_argument("--skip-memory", action="store_true", help="throughput only")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    parser.add_argument(
        "--work-dir",
        default=DEFAULT_WORK_DIR,
        help=f"where inputs and outputs go (default {DEFAULT_WORK_DIR}: RAM, so that the "
        "disk's file-creation time does not count as the worker's)",
    )
    parser.add_argument(
        "--memory-child", nargs=3, metavar=("INPUTS", "OUTPUT", "URL"), help=argparse.SUPPRESS
    )
    parser.add_argument("--idle-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.idle_child:  # the same imports, doing nothing: the baseline
        print(peak_rss_kib())
        return 0
    if args.memory_child:
        memory_child(*args.memory_child, args.concurrency)
        return 0
    try:
        model = examples_dir() / MODEL_DIR
    except DemoError as exc:
        print(f"batch_bench: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="batch-bench-", dir=args.work_dir) as tmp:
        work = Path(tmp)
        with model_server(model, work / "model.log") as address:
            url = f"http://{address}"
            result = throughput(url, work, args)
            if not args.skip_memory:
                result["memory"] = memory(url, work, args)
    result["settings"] = {
        "concurrency": args.concurrency,
        "requests": args.requests,
        "rounds": args.rounds,
        "rows_per_file": ROWS_PER_FILE,
        "work_dir": args.work_dir or tempfile.gettempdir(),
    }
    result["environment"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
