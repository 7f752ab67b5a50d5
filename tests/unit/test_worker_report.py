"""The worker's report: what a worker writes in its termination message is what the status
reads back, every manifest included, in at most 4096 bytes."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from inferops.api.batch import BatchServiceSpec
from inferops.contract.worker_report import MAX_MESSAGE_BYTES, WorkerReport, manifest_name
from inferops.reconcile.batch_status import batch_status, worker_reports
from inferops.worker.commands import write_termination_log
from inferops.worker.manifest import chunk_name, chunk_number
from tests.unit.rules_table import bs

BASE = "s3://bucket/out/infer-result-0123456789ab"


def worker_chunks(index: int, count: int, chunks: int) -> list[str]:
    """The manifests worker `index` of `count` writes, named by the worker's own code."""
    return [
        f"s3://bucket/out/{chunk_name('0123456789ab', chunk_number(k, index, count))}"
        for k in range(chunks)
    ]


def pod(index: int, message: str, created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"job-{index}",
            "creationTimestamp": created,
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {"name": "worker", "state": {"terminated": {"exitCode": 0, "message": message}}}
            ],
        },
    }


@pytest.mark.parametrize(
    ("index", "count", "chunks"),
    [
        (0, 1, 1),
        (0, 1, 2),
        (0, 1, 900),
        (3, 4, 700),
        (1, 7, 2),
        (6, 7, 5000),
    ],
)
def test_every_manifest_survives_the_termination_message(
    index: int, count: int, chunks: int
) -> None:
    report = WorkerReport(
        total=chunks * 10,
        succeeded=chunks * 9,
        failed=chunks,
        manifests=worker_chunks(index, count, chunks),
    )
    message = report.message()
    assert len(message.encode()) <= MAX_MESSAGE_BYTES
    assert WorkerReport.parse(message) == report


def test_a_short_report_is_plain_json() -> None:
    few = WorkerReport(total=3, succeeded=3, failed=0, manifests=["s3://b/o/x.manifest"])
    assert json.loads(few.message()) == {
        "total": 3,
        "succeeded": 3,
        "failed": 0,
        "manifests": ["s3://b/o/x.manifest"],
    }
    assert json.loads(WorkerReport(error="boom").message()) == {"error": "boom"}


def test_names_outside_the_chunk_naming_are_cut_and_say_so() -> None:
    odd = [f"s3://bucket/out/{i}-{'x' * 40}.txt" for i in range(500)]
    message = WorkerReport(total=1, succeeded=1, manifests=odd).message()
    assert len(message.encode()) <= MAX_MESSAGE_BYTES
    back = WorkerReport.parse(message)
    assert back is not None and back.manifests_truncated
    assert back.manifests == odd[: len(back.manifests)] and 0 < len(back.manifests) < 500


@pytest.mark.parametrize(
    "message",
    [
        "",
        "not json",
        "[1]",
        '{"total": -1}',
        '{"total": "3"}',
        '{"manifest_base": "x", "manifest_runs": [[0, 1, 100000000]]}',
        '{"manifest_base": "x", "manifest_runs": [[0, 1]]}',
        "{" + " " * 5000 + "}",
    ],
)
def test_a_hostile_message_is_not_a_report(message: str) -> None:
    parsed = WorkerReport.parse(message)
    assert parsed is None or parsed.manifests == []


def test_the_status_lists_every_manifest_of_every_worker() -> None:
    """A worker with thousands of manifests is fully reported (the count alone was not)."""
    count = 3
    per_worker = {i: worker_chunks(i, count, 1500 + i) for i in range(count)}
    pods = [
        pod(i, WorkerReport(total=5, succeeded=5, manifests=m).message())
        for i, m in per_worker.items()
    ]
    assert {k: r.manifests for k, r in worker_reports(pods).items()} == {
        str(i): m for i, m in per_worker.items()
    }
    spec = BatchServiceSpec.model_validate(bs(computeNodes=count)["spec"])
    status = batch_status(
        spec,
        generation=1,
        old=None,
        job=None,
        pods=pods,
        task="t",
        now=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    )
    assert status.output_manifests == sorted(m for ms in per_worker.values() for m in ms)
    assert status.progress.total == 15


def test_the_first_chunk_has_no_number() -> None:
    assert manifest_name(BASE, 0) == f"{BASE}.manifest"
    assert manifest_name(BASE, 12) == f"{BASE}_12.manifest"


def test_the_worker_writes_its_report_to_the_termination_log(tmp_path: Path) -> None:
    report = WorkerReport(total=3, succeeded=3, manifests=worker_chunks(0, 1, 2000))
    log = tmp_path / "log"
    write_termination_log(report, {"INFEROPS_TERMINATION_LOG": str(log)})
    assert WorkerReport.parse(log.read_text()) == report
