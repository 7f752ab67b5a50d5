"""Local files: only local runs read or write them, links never lead out of the input
folder, nothing under a folder is skipped without a line, and CSV row errors never quote a
cell back."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from inferops.contract.batch_worker import config_from_service
from inferops.worker.runner import WorkerError, run_local, run_worker
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

SECRET = "SECRET-7c1e"


def test_a_worker_in_a_cluster_refuses_local_sources(s3: Any, tmp_path: Path) -> None:
    (tmp_path / "secret.csv").write_text(f"{SECRET},1,2,3\n")
    s3.create_bucket(Bucket="data")
    sources = [str(tmp_path / "secret.csv"), f"file://{tmp_path}/secret.csv", "/etc/hostname"]
    body = "".join(json.dumps({"source": s}) + "\n" for s in sources)
    s3.put_object(Bucket="data", Key="in.manifest", Body=body.encode())
    recording = Recording()
    with serve(recording_model(recording)) as url:
        config = config_from_service(
            batch_service("s3://data/in.manifest", "s3://data/out/"),
            application(SEED_SCHEMA),
            url,
            "P",
        )
        summary = asyncio.run(run_worker(config))
    out = s3.get_object(Bucket="data", Key="out/infer-result-P.manifest")["Body"].read().decode()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["error_message"] for line in lines] == [
        "local paths are only for local runs (inferops batch run)"
    ] * 3
    assert summary.failed == 3 and recording.requests == [] and SECRET not in out


@pytest.mark.parametrize("which", ["inputPath", "outputPath"])
def test_a_worker_in_a_cluster_refuses_local_folders(which: str, tmp_path: Path) -> None:
    paths = {"inputPath": "s3://data/in/", "outputPath": "s3://data/out/"}
    paths[which] = str(tmp_path / "here")
    service = batch_service(paths["inputPath"], paths["outputPath"])
    config = config_from_service(service, application(SEED_SCHEMA), "http://127.0.0.1:9", "L")
    field = "input_path" if which == "inputPath" else "output_path"
    with pytest.raises(WorkerError, match=f"^{field}: .*: local paths are only for local runs"):
        asyncio.run(run_worker(config))
    assert not (tmp_path / "here").exists()


def test_links_and_special_files_are_failed_lines(tmp_path: Path) -> None:
    inputs, outside = tmp_path / "in", tmp_path / "outside"
    (inputs / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.png").write_text(SECRET)
    (inputs / "a.png").write_bytes(b"a")
    (inputs / "sub" / "b.png").write_bytes(b"b")
    os.symlink(outside / "secret.png", inputs / "escape.png")
    os.symlink("../../outside/secret.png", inputs / "sub" / "relative-escape.png")
    os.symlink(inputs / "sub" / "b.png", inputs / "inside.png")  # stays inside: read
    os.symlink(inputs / "gone.png", inputs / "broken.png")
    os.symlink(outside, inputs / "folder-link")
    os.symlink(inputs / "sub", inputs / "inner-folder-link")
    os.mkfifo(inputs / "pipe.png")  # would block a reader forever
    recording = Recording()
    with serve(recording_model(recording)) as url:
        service = batch_service(str(inputs), str(tmp_path / "out"))
        [summary] = run_local(service, application(FILE_SCHEMA), url, "K")
    got = {
        line["source"].removeprefix(f"{inputs}/"): line.get("error_message", "ok")
        for line in manifest_lines(tmp_path / "out", "K")
    }
    assert got == {
        "a.png": "ok",
        "broken.png": "a broken symbolic link",
        "escape.png": "a symbolic link to outside the input folder",
        "folder-link": "a symbolic link to outside the input folder",
        "inner-folder-link": "a symbolic link to a folder (not followed)",
        "inside.png": "ok",
        "pipe.png": "not a regular file (a FIFO)",
        "sub/b.png": "ok",
        "sub/relative-escape.png": "a symbolic link to outside the input folder",
    }
    assert (summary.total, summary.succeeded) == (9, 3)
    assert sorted(name for _, (_, name) in recording.requests) == ["a.png", "b.png", "inside.png"]
    results = tmp_path / "out" / "infer-result-K"
    assert all(SECRET not in p.read_text() for p in results.rglob("*") if p.is_file())


def test_csv_row_errors_name_the_column_not_the_cell(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.csv").write_text(f"{SECRET},1,2,3\n1,2,3,{SECRET}\n")
    (tmp_path / "in" / "latin1.csv").write_bytes(SECRET.encode() + b"\xe9,1,2,3\n")
    recording = Recording()
    with serve(recording_model(recording)) as url:
        service = batch_service(str(tmp_path / "in"), str(tmp_path / "out"))
        run_local(service, application(SEED_SCHEMA), url, "Q")
    lines = manifest_lines(tmp_path / "out", "Q")
    assert [line["error_message"].split(" (results in")[0] for line in lines] == [
        "the CSV file is not UTF-8 text (byte 11)",
        "2 of 2 rows failed: row 1: column 0: not a number; row 2: column 3: not a number",
    ]
    result = (tmp_path / "out" / "infer-result-Q" / "rows.csv_result.txt").read_text()
    assert SECRET not in result and SECRET not in json.dumps(lines)
