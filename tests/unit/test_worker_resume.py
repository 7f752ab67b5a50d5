"""Shards, chunked manifests, and a worker killed mid-run that resumes exactly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from inferops.contract.batch_worker import WorkerConfig, config_from_service, config_to_env_json
from inferops.worker.runner import run_local, run_worker
from tests.worker_support import (
    SEED_SCHEMA,
    Recording,
    application,
    batch_service,
    manifest_lines,
    read_lines,
    recording_model,
    serve,
)


def inputs(folder: Path, count: int) -> list[str]:
    """count one-row CSV files whose first column says which file it is."""
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        path = folder / f"{i:04d}.csv"
        path.write_text(f"{i},1,1,1\n")
        paths.append(str(path))
    return paths


def config(tmp_path: Path, url: str, task: str, **overrides: object) -> WorkerConfig:
    service = batch_service(str(tmp_path / "in"), str(tmp_path / "out"), concurrency=2)
    settings = {
        "manifest_max_lines": 10,
        "flush_lines": 2,
        "flush_seconds": 0.05,
        "allow_local_paths": True,
        **overrides,
    }
    return config_from_service(service, application(SEED_SCHEMA), url, task, **settings)


def chunk_sizes(out: Path, task: str) -> dict[str, int]:
    return {
        p.name: len(p.read_text().splitlines()) for p in out.glob(f"infer-result-{task}*.manifest")
    }


def wait_for(path: Path, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.005)


def assert_exactly_once(out: Path, task: str, sources: list[str]) -> None:
    lines = manifest_lines(out, task)
    assert Counter(line["source"] for line in lines) == Counter(sources)
    assert [line["source"] for line in lines] == sources  # one worker: shard order = order
    assert {line["result"] for line in lines} == {"SUCCESSFUL"}
    sizes = sorted(chunk_sizes(out, task).values(), reverse=True)
    assert all(size == 10 for size in sizes[1:-1]) and sizes[0] == 10


def test_killed_worker_process_resumes_exactly(tmp_path: Path) -> None:
    sources = inputs(tmp_path / "in", 200)
    recording = Recording(delay=0.02)
    with serve(recording_model(recording)) as url:
        cfg = config(tmp_path, url, "K")
        env = {**os.environ, "INFEROPS_BATCH_CONFIG": config_to_env_json(cfg)}
        env.pop("INFEROPS_TERMINATION_LOG", None)
        process = subprocess.Popen(
            [sys.executable, "-m", "inferops.cli", "batch-worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(tmp_path / "out" / "infer-result-K_2.manifest")  # 20+ lines committed
        finally:
            process.send_signal(signal.SIGKILL)  # no chance to save anything more
            process.wait(10)
        before = sum(chunk_sizes(tmp_path / "out", "K").values())
        assert 20 <= before < 200
        summary = asyncio.run(run_worker(cfg))
    assert (summary.total, summary.succeeded, summary.failed) == (200, 200, 0)
    assert len(summary.manifests) == 20
    assert_exactly_once(tmp_path / "out", "K", sources)
    # The restart skipped what was reported: at most the in-flight window is redone.
    firsts = Counter(body["data"]["req_data"][0]["input_1"] for body in recording.bodies())
    assert sum(firsts.values()) - 200 <= max(2 * cfg.concurrency, 8) + cfg.flush_lines + 2
    assert all(firsts[i] == 1 for i in range(before - 1))


def test_cancelled_worker_saves_its_manifest_and_resumes(tmp_path: Path) -> None:
    sources = inputs(tmp_path / "in", 120)
    recording = Recording(delay=0.01)

    async def cancel_midway(cfg: WorkerConfig) -> None:
        task = asyncio.ensure_future(run_worker(cfg))
        while not (tmp_path / "out" / "infer-result-C_1.manifest").exists():
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with serve(recording_model(recording)) as url:
        # No periodic flushes: what is saved at all was saved when cancelled or chunks filled.
        cfg = config(tmp_path, url, "C", flush_lines=1000, flush_seconds=3600)
        asyncio.run(cancel_midway(cfg))
        saved = sum(chunk_sizes(tmp_path / "out", "C").values())
        assert 10 <= saved < 120
        summary = asyncio.run(run_worker(cfg))
    assert summary.total == 120
    assert_exactly_once(tmp_path / "out", "C", sources)
    # Cancelling saved every committed line: only sources in flight were sent twice.
    assert len(recording.bodies()) - 120 <= max(2 * cfg.concurrency, 8)


def test_three_workers_disjoint_shards_and_chunk_names(tmp_path: Path) -> None:
    sources = inputs(tmp_path / "in", 30)
    service = batch_service(str(tmp_path / "in"), str(tmp_path / "out"), computeNodes=3)
    recording = Recording()
    with serve(recording_model(recording)) as url:
        summaries = run_local(
            service, application(SEED_SCHEMA), url, "S", limits={"manifestMaxLines": 4}
        )
    out = tmp_path / "out"
    # Worker i's k-th chunk is number k*3 + i: no two workers ever write the same object.
    assert chunk_sizes(out, "S") == {
        "infer-result-S.manifest": 4,
        "infer-result-S_1.manifest": 4,
        "infer-result-S_2.manifest": 4,
        "infer-result-S_3.manifest": 4,
        "infer-result-S_4.manifest": 4,
        "infer-result-S_5.manifest": 4,
        "infer-result-S_6.manifest": 2,
        "infer-result-S_7.manifest": 2,
        "infer-result-S_8.manifest": 2,
    }
    for i, summary in enumerate(summaries):
        assert summary.total == 10
        chunks = [Path(m) for m in summary.manifests]
        assert [c.name for c in chunks] == [
            f"infer-result-S{'' if k * 3 + i == 0 else f'_{k * 3 + i}'}.manifest" for k in range(3)
        ]
        lines = [line["source"] for chunk in chunks for line in read_lines(chunk)]
        assert lines == sources[i::3]  # this worker's shard, in order
    assert sorted(body["data"]["req_data"][0]["input_1"] for body in recording.bodies()) == list(
        range(30)
    )
    assert Counter(line["source"] for line in manifest_lines(out, "S")) == Counter(sources)
    assert json.loads((out / "infer-result-S" / "0029.csv_result.txt").read_text()) == {
        "echo": {"data": {"req_data": [{"input_1": 29, "input_2": 1, "input_3": 1, "input_4": 1}]}}
    }


def test_sigterm_saves_the_manifest_and_exits_143(tmp_path: Path) -> None:
    sources = inputs(tmp_path / "in", 80)
    recording = Recording(delay=0.02)
    with serve(recording_model(recording)) as url:
        cfg = config(tmp_path, url, "T", flush_lines=1000, flush_seconds=3600)
        env = {**os.environ, "INFEROPS_BATCH_CONFIG": config_to_env_json(cfg)}
        process = subprocess.Popen(
            [sys.executable, "-m", "inferops.cli", "batch-worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(tmp_path / "out" / "infer-result-T_1.manifest")
        process.send_signal(signal.SIGTERM)  # what Kubernetes sends when it stops a pod
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 143, stderr
        assert "stopped by a signal; committed results are saved" in stderr
        saved = sum(chunk_sizes(tmp_path / "out", "T").values())
        assert 20 <= saved < 80
        summary = asyncio.run(run_worker(cfg))
    assert summary.total == 80
    assert_exactly_once(tmp_path / "out", "T", sources)
