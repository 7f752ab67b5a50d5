"""The worker never has more than `concurrency` requests at the model, and uses them all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inferops.worker.runner import run_local
from tests.worker_support import (
    FILE_SCHEMA,
    SEED_SCHEMA,
    Recording,
    application,
    batch_service,
    manifest_lines,
    recording_model,
    serve,
)


@pytest.mark.parametrize("concurrency", [1, 3, 8])
def test_requests_in_flight_are_bounded_by_concurrency(tmp_path: Path, concurrency: int) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "many.csv").write_text("5.1,3.5,1.4,0.2\n" * 40)  # lanes within one file
    for i in range(20):  # and sources side by side in the window
        (inputs / f"one-{i:02d}.csv").write_text(f"{i},1,2,3\n")
    service = batch_service(str(inputs), str(tmp_path / "out"), concurrency=concurrency)
    recording = Recording(delay=0.02)
    with serve(recording_model(recording)) as url:
        [summary] = run_local(service, application(SEED_SCHEMA), url, "C")
    assert (summary.total, summary.failed) == (21, 0)
    assert len(recording.bodies()) == 60
    assert recording.peak == concurrency


def test_file_requests_are_bounded_too(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(12):
        (inputs / f"img-{i:02d}.png").write_bytes(b"x" * 10)
    service = batch_service(str(inputs), str(tmp_path / "out"), concurrency=4)
    recording = Recording(delay=0.02)
    with serve(recording_model(recording)) as url:
        run_local(service, application(FILE_SCHEMA), url, "F")
    lines = manifest_lines(tmp_path / "out", "F")
    assert [line["result"] for line in lines].count("SUCCESSFUL") == 12, json.dumps(lines)
    assert recording.peak == 4
