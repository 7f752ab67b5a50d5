"""The batch worker's peak memory against what the model answers and how its CSV files look.

A model on loopback (aiohttp, in this process) answers a small JSON body per CSV row, or a
large body (streamed from a repeated chunk, so the model itself holds little) per file. Each
case runs one real worker (`inferops.worker.runner.run_worker`, default concurrency 4) in a
fresh process and reports its peak RSS (VmHWM), next to two baselines from the same run:
the interpreter with the worker's imports doing nothing (`idle`) and a worker over one
one-row CSV file (`small`). Ratios are case / small.

    python bench/worker_memory_bench.py --out /tmp/worker-memory.json
    PYTHONPATH=/path/to/older/checkout/operator python bench/worker_memory_bench.py

The second form measures another checkout of the package (the worker config's newer
fields are only set when that checkout has them), which is how the numbers before and
after a change are compared. This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

import inferops
from inferops.contract.batch_worker import WorkerConfig, config_from_service
from inferops.worker.runner import run_worker

CHUNK = b"x" * (1024 * 1024)
SCHEMA_CSV: dict[str, Any] = {
    "type": "object",
    "properties": {"data": {"type": "object", "properties": {"a": {"type": "number"}}}},
}
SCHEMA_FILE: dict[str, Any] = {"type": "object", "properties": {"images": {"type": "file"}}}


def app_object(schema: dict[str, Any], url: str) -> dict[str, Any]:
    api = {"method": "post", "url": url, "request": {"Content-type": "x", "data": schema}}
    return {"spec": {"versions": [{"version": "1", "image": "m:1", "apis": [api]}]}}


def model_app() -> web.Application:
    async def small(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b'{"ok":1}', content_type="application/json")

    async def large(request: web.Request) -> web.StreamResponse:
        await request.read()
        mib = int(request.match_info["mib"])
        response = web.StreamResponse()
        if request.match_info["framing"] == "length":
            response.content_length = mib * len(CHUNK)
        await response.prepare(request)
        for _ in range(mib):
            await response.write(CHUNK)
        await response.write_eof()
        return response

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/small", small)
    app.router.add_post("/large/{mib}/{framing}", large)
    return app


@contextmanager
def serve_model() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(model_app(), access_log=None)
    ready = threading.Event()
    port: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{port[0]}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def peak_rss_kib() -> int:
    """VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def child(case: dict[str, Any]) -> None:
    """In a fresh process: one worker over the case's inputs, then its peak RSS."""
    known = {f.name for f in dataclasses.fields(WorkerConfig)}
    overrides = {k: v for k, v in {"allow_local_paths": True}.items() if k in known}
    service = {
        "spec": {
            "application": "m",
            "version": "1",
            "inputPath": case["inputs"],
            "outputPath": case["output"],
            "specification": "cpu.2u4g",
            "requestPath": case["path"],
        }
    }
    schema = SCHEMA_FILE if case["file"] else SCHEMA_CSV
    config = config_from_service(
        service, app_object(schema, case["path"]), case["url"], "mem", **overrides
    )
    summary = asyncio.run(run_worker(config))
    out = {"succeeded": summary.succeeded, "failed": summary.failed}
    print(json.dumps({**out, "max_rss_mib": round(peak_rss_kib() / 1024, 1)}))


def run_child(case: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", json.dumps(case)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def cases(work: Path, url: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    (work / "small").mkdir()
    (work / "small" / "one.csv").write_text("1\n")
    (work / "rows").mkdir()
    rows = (args.csv_mib * 1024 * 1024) // 2
    (work / "rows" / "rows.csv").write_text("1\n" * rows)  # short rows: 2 bytes each
    (work / "files").mkdir()
    for i in range(3):
        (work / "files" / f"{i}.bin").write_bytes(b"in")

    def case(inputs: str, path: str, file: bool) -> dict[str, Any]:
        output = str(work / f"out-{len(list(work.glob('out-*')))}")
        Path(output).mkdir()
        return {
            "inputs": str(work / inputs),
            "output": output,
            "url": url,
            "path": path,
            "file": file,
        }

    mib = args.answer_mib
    csv = (
        {}
        if args.skip_csv
        else {f"csv_{args.csv_mib}mib_{rows}_rows": case("rows", "/small", False)}
    )
    return {
        "small": case("small", "/small", False),
        **csv,
        f"answers_3x{mib}mib_length": case("files", f"/large/{mib}/length", True),
        f"answers_3x{mib}mib_chunked": case("files", f"/large/{mib}/chunked", True),
        f"answers_3x{args.under_cap_mib}mib": case(
            "files", f"/large/{args.under_cap_mib}/length", True
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv-mib", type=int, default=1, help="size of the CSV of short rows")
    parser.add_argument("--answer-mib", type=int, default=100, help="large answers, MiB each")
    parser.add_argument("--under-cap-mib", type=int, default=15, help="answers under the cap")
    parser.add_argument(
        "--skip-csv", action="store_true", help="leave out the CSV case (about 100 s per MiB)"
    )
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--idle-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.idle_child:
        print(json.dumps({"max_rss_mib": round(peak_rss_kib() / 1024, 1)}))
        return 0
    if args.child:
        child(json.loads(args.child))
        return 0
    # The worker hangs up on answers over its limit; the model need not log each time.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, serve_model() as url:
        idle = subprocess.run(
            [sys.executable, __file__, "--idle-child"], capture_output=True, text=True, check=True
        )
        results["idle"] = json.loads(idle.stdout)
        for name, case in cases(Path(tmp), url, args).items():
            results[name] = run_child(case)
            print(name, results[name], flush=True)
    small = results["small"].get("max_rss_mib") or 1.0
    ratios = {
        name: round(r["max_rss_mib"] / small, 2)
        for name, r in results.items()
        if "max_rss_mib" in r
    }
    report = {
        "results": results,
        "ratio_to_small": ratios,
        "package": os.path.dirname(inferops.__file__),
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
