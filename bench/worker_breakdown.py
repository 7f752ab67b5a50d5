"""Where the batch worker's time goes, against one model server, in one run.

    python bench/worker_breakdown.py --requests 20000 --concurrency 16

Three clients post the seed's request body to the same `inferops model-server` (iris):
- plain: a bare aiohttp loop posting a pre-encoded body (the baseline);
- client: the worker's own ModelClient (retries, timeouts, bounded concurrency);
- worker: the whole worker over one CSV file of the same rows (CSV, mapping, encoding,
  ordered results, manifest).
The ratios client/plain and worker/plain split the worker's cost between its HTTP client
and the rest of its pipeline. Nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

from inferops.contract.batch_worker import config_from_service
from inferops.demo import MODEL_DIR, examples_dir, model_server
from inferops.worker.client import ModelClient
from inferops.worker.runner import run_local

ROW = "5.1,3.5,1.4,0.2"
BODY = json.dumps(
    {"data": {"req_data": [{"input_1": 5.1, "input_2": 3.5, "input_3": 1.4, "input_4": 0.2}]}}
).encode()


async def lanes(concurrency: int, requests: int, post: object) -> float:
    left = requests

    async def lane() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await post()  # type: ignore[operator]

    began = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return requests / (time.perf_counter() - began)


async def plain(url: str, concurrency: int, requests: int) -> float:
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post() -> None:
            async with session.post(url + "/", data=BODY, headers=headers) as response:
                await response.read()

        return await lanes(concurrency, requests, post)


async def client(config: object, concurrency: int, requests: int) -> float:
    async with ModelClient(config) as model:  # type: ignore[arg-type]

        async def post() -> None:
            await model.post_json(BODY)

        return await lanes(concurrency, requests, post)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    examples = examples_dir()
    app = yaml.safe_load((examples / "iris-application.yaml").read_text())
    batch = yaml.safe_load((examples / "iris-batch-folder.yaml").read_text())
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(dir="/dev/shm")))
        (work / "in").mkdir()
        (work / "in" / "rows.csv").write_text((ROW + "\n") * args.requests)
        batch["spec"].pop("storage", None)
        batch["spec"].update(
            inputPath=f"{work}/in/", outputPath=f"{work}/out/", concurrency=args.concurrency
        )
        url = "http://" + stack.enter_context(
            model_server(examples / MODEL_DIR, work / "model-server.log")
        )
        config = config_from_service(batch, app, url, "bench", 0, 1, allow_local_paths=True)
        rates: dict[str, list[float]] = {"plain": [], "client": [], "worker": []}
        for number in range(args.rounds):
            rates["plain"].append(asyncio.run(plain(url, args.concurrency, args.requests)))
            rates["client"].append(asyncio.run(client(config, args.concurrency, args.requests)))
            shutil.rmtree(work / "out", ignore_errors=True)
            began = time.perf_counter()
            run_local(batch, app, url, f"bench{number}", 1)
            rates["worker"].append(args.requests / (time.perf_counter() - began))
    best = {name: max(values) for name, values in rates.items()}
    for name, rate in best.items():
        print(f"{name:<7} {rate:8,.0f} req/s (best of {args.rounds})")
    print(
        f"client/plain {best['client'] / best['plain']:.3f}  "
        f"worker/plain {best['worker'] / best['plain']:.3f}"
    )


if __name__ == "__main__":
    main()
