"""The worker's memory does not grow with the number of inputs (traced, not timed)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferops.contract.batch_worker import config_from_service
from inferops.worker.runner import run_worker
from tests.s3server import wait_until_serving
from tests.worker_support import IRIS_MODEL, SEED_SCHEMA, application, batch_service, free_port

PER_FOLDER = 100  # a folder listing is held while it is walked; keep folders alike


@pytest.fixture(scope="module")
def iris_url() -> Iterator[str]:
    """The reference model server in its own process, so only the worker is traced."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inferops.cli",
            "model-server",
            "--model",
            str(IRIS_MODEL),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(f"{url}/health", process, 30, "the model server")
    yield url
    process.terminate()
    process.wait(10)


def peak_bytes(tmp_path: Path, url: str, count: int, trace: bool = True) -> tuple[int, int]:
    root = tmp_path / f"in{count}"
    for i in range(count):
        folder = root / f"{i // PER_FOLDER:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:05d}.csv").write_text("5.1,3.5,1.4,0.2\n")
    service = batch_service(str(root), str(tmp_path / f"out{count}"), concurrency=8)
    config = config_from_service(
        service,
        application(SEED_SCHEMA),
        url,
        f"m{count}",
        manifest_max_lines=100,
        allow_local_paths=True,
    )
    if trace:
        tracemalloc.start()
    try:
        summary = asyncio.run(run_worker(config))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()  # a no-op when not tracing
    assert (summary.total, summary.succeeded) == (count, count)
    return peak, len(summary.manifests)


def test_peak_memory_is_flat_in_the_number_of_inputs(tmp_path: Path, iris_url: str) -> None:
    peak_bytes(tmp_path, iris_url, 100, trace=False)  # lazy imports happen untraced
    small, _ = peak_bytes(tmp_path, iris_url, 200)
    large, chunks = peak_bytes(tmp_path, iris_url, 5000)
    assert chunks == 50
    # 25x the inputs: holding as little as 100 bytes per input would add 480 kB.
    assert large < small + 400 * 1024, (small, large)
