"""Every kind of failure is one FAILED line with a clear message; the rest succeeds."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from inferops.contract.batch_worker import config_from_service, config_to_env_json
from inferops.worker.runner import WorkerError, run_local, run_worker
from tests.worker_support import (
    FILE_SCHEMA,
    SEED_SCHEMA,
    Recording,
    application,
    batch_service,
    free_port,
    manifest_lines,
    read_lines,
    recording_model,
    serve,
)

FAST = {"retries": 2, "backoff_seconds": 0.01, "request_timeout_seconds": 1.0}


def test_file_input_failures(s3: Any, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="data")
    for name, size in [
        ("ok.png", 10),
        ("fail.png", 10),
        ("bad.png", 10),
        ("slow.png", 10),
        ("big.jpg", 101),
        ("ok2.wav", 500),
        ("table.csv", 201),
    ]:
        s3.put_object(Bucket="data", Key=f"in/{name}", Body=b"x" * size)
    sources = [
        f"obs://data/in/{n}"
        for n in [
            "ok.png",
            "fail.png",
            "bad.png",
            "slow.png",
            "big.jpg",
            "missing.png",
            "ok2.wav",
            "table.csv",
        ]
    ]
    lines = [json.dumps({"source": s}) for s in sources]
    lines[6:6] = ["{not json", '{"src": "obs://data/in/ok.png"}', '{"source": "ftp://x/y.png"}']
    s3.put_object(Bucket="data", Key="in.manifest", Body="\n".join(lines).encode())
    service = batch_service("obs://data/in.manifest", "obs://data/out/")
    recording = Recording()
    with serve(recording_model(recording)) as url:
        [summary] = run_local(
            service,
            application(FILE_SCHEMA),
            url,
            "F",
            limits={"maxImageBytes": 100, "maxCsvBytes": 200},
            **FAST,
        )
    body = s3.get_object(Bucket="data", Key="out/infer-result-F.manifest")["Body"].read()
    got = [json.loads(line) for line in body.decode().splitlines()]
    expected = [
        ("obs://data/in/ok.png", None),
        (
            "obs://data/in/fail.png",
            'the model answered HTTP 500: {"error": "boom"} (after 3 attempts)',
        ),
        ("obs://data/in/bad.png", 'the model answered HTTP 400: {"error": "not an image"}'),
        ("obs://data/in/slow.png", "the model did not answer within 1 s"),
        ("obs://data/in/big.jpg", "image is larger than the 100-byte limit (101 bytes)"),
        (
            "obs://data/in/missing.png",
            "Download file failed: obs://data/in/missing.png: object not found",
        ),
        (
            "{not json",
            "manifest line 7: not valid JSON (Expecting property name enclosed in "
            "double quotes: line 1 column 2 (char 1))",
        ),
        (
            '{"src": "obs://data/in/ok.png"}',
            'manifest line 8: expected a JSON object with a "source" string',
        ),
        (
            "ftp://x/y.png",
            "manifest line 9: ftp://x/y.png: unsupported scheme 'ftp' (obs, s3, https, file)",
        ),
        ("obs://data/in/ok2.wav", None),  # no limit for other files (beyond max_file_bytes)
        ("obs://data/in/table.csv", "CSV file is larger than the 200-byte limit (201 bytes)"),
    ]
    assert [(g["source"], g.get("error_message")) for g in got] == expected
    assert [g["result"] for g in got] == [
        "SUCCESSFUL" if e is None else "FAILED" for _, e in expected
    ]
    assert [list(g) for g in got][:2] == [
        ["source", "result", "inference-loc"],
        ["source", "result", "error_message"],
    ]
    assert summary.to_dict()["succeeded"] == 2 and summary.failed == 9
    result = json.loads(
        s3.get_object(Bucket="data", Key="out/infer-result-F/ok.png_result.txt")["Body"].read()
    )
    assert result == {"field": "images", "name": "ok.png", "size": 10}
    # 500 is retried (1 + 2 retries), 400 is not; oversize and missing files are never sent.
    names = [body[1] for _, body in recording.requests]
    assert names.count("fail.png") == 3 and names.count("bad.png") == 1
    assert "big.jpg" not in names and "table.csv" not in names


def test_hostile_manifest_lines_fail_alone(tmp_path: Path) -> None:
    """A 2 KB line nested 1,000 deep used to raise RecursionError in every worker."""
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "in" / name).write_bytes(b"x" * 10)
    good = [json.dumps({"source": str(tmp_path / "in" / n)}) for n in ("a.png", "b.png")]
    deep = '{"source": ' + "[" * 1000 + "]" * 1000 + "}"
    assert 2000 < len(deep) < 2100
    hostile = [
        deep,
        '{"source": "x", "n": ' + "9" * 5000 + "}",
        '{"source": "\\ud800.png"}',
        '{"source": NaN}',
    ]
    manifest = tmp_path / "in.manifest"
    manifest.write_text("\n".join([good[0], *hostile, good[1]]) + "\n")
    service = batch_service(str(manifest), str(tmp_path / "out"))
    recording = Recording()
    with serve(recording_model(recording)) as url:
        summaries = run_local(service, application(FILE_SCHEMA), url, "H", 2, **FAST)
    got = manifest_lines(tmp_path / "out", "H")
    by_source = {line["source"]: line for line in got}
    assert len(got) == 6 and sum(s.total for s in summaries) == 6
    assert [by_source[json.loads(g)["source"]]["result"] for g in good] == ["SUCCESSFUL"] * 2
    failed = [line for line in got if line["result"] == "FAILED"]
    # Two workers: each wrote its own shard, so compare in line order.
    assert sorted(line["error_message"] for line in failed) == [
        "manifest line 2: not valid JSON (nested deeper than 100 levels)",
        "manifest line 3: not valid JSON (a number has more than 256 digits)",
        "manifest line 4: not valid JSON (a string holds an unpaired surrogate \\ud800)",
        "manifest line 5: not valid JSON (NaN is not JSON)",
    ]
    assert deep[:200] + "..." in {line["source"] for line in failed}


def test_csv_row_failures(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "mixed.csv").write_text(
        "5.1,3.5,1.4,0.2\nabc,1,2,3\n500,1,1,1\n\n4.9,x,1.4,0.2\n400,1,1,1\n999,1,1,1\n"
    )
    (tmp_path / "in" / "empty.csv").write_text("")
    (tmp_path / "in" / "short.csv").write_text("1,2\n")  # missing columns: leaves left out
    (tmp_path / "in" / "latin1.csv").write_bytes(b"1,2,3,\xe9\n")
    service = batch_service(str(tmp_path / "in"), str(tmp_path / "out"))
    recording = Recording()
    with serve(recording_model(recording)) as url:
        [summary] = run_local(service, application(SEED_SCHEMA), url, "R", **FAST)
    got = {Path(line["source"]).name: line for line in manifest_lines(tmp_path / "out", "R")}
    results = tmp_path / "out" / "infer-result-R"
    assert got["empty.csv"]["result"] == "SUCCESSFUL"
    assert (results / "empty.csv_result.txt").read_text() == ""
    assert got["short.csv"]["result"] == "SUCCESSFUL"
    assert read_lines(results / "short.csv_result.txt") == [
        {"echo": {"data": {"req_data": [{"input_1": 1, "input_2": 2}]}}}
    ]
    assert got["latin1.csv"]["error_message"].startswith("the CSV file is not UTF-8 text")
    mixed = got["mixed.csv"]
    assert "inference-loc" not in mixed
    assert mixed["error_message"] == (
        "5 of 6 rows failed: row 2: column 0: not a number; "
        'row 3: the model answered HTTP 500: {"error": "model crashed"} (after 3 attempts); '
        "row 5: column 1: not a number; "
        'row 6: the model answered HTTP 400: {"error": "bad input"}; '
        "row 7: the model did not answer within 1 s "
        f"(results in {results / 'mixed.csv_result.txt'})"
    )
    # The result file is still written: one line per row, failures in their place.
    assert read_lines(results / "mixed.csv_result.txt") == [
        {
            "echo": {
                "data": {
                    "req_data": [{"input_1": 5.1, "input_2": 3.5, "input_3": 1.4, "input_4": 0.2}]
                }
            }
        },
        {"error": "column 0: not a number"},
        {"error": 'the model answered HTTP 500: {"error": "model crashed"} (after 3 attempts)'},
        {"error": "column 1: not a number"},
        {"error": 'the model answered HTTP 400: {"error": "bad input"}'},
        {"error": "the model did not answer within 1 s"},
    ]
    assert (summary.total, summary.succeeded, summary.failed) == (4, 2, 2)


def test_model_not_listening_is_a_failed_line(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("1,2,3,4\n")
    service = batch_service(str(tmp_path / "in"), str(tmp_path / "out"))
    url = f"http://127.0.0.1:{free_port()}"
    [summary] = run_local(service, application(SEED_SCHEMA), url, "C", **FAST)
    [line] = manifest_lines(tmp_path / "out", "C")
    assert summary.failed == 1
    assert line["error_message"].startswith(
        f"1 of 1 rows failed: row 1: cannot reach the model at {url}/: "
    )
    assert "(after 3 attempts)" in line["error_message"]


def test_unreadable_input_is_fatal(tmp_path: Path, s3: Any) -> None:
    service = batch_service(str(tmp_path / "nothing"), str(tmp_path / "out"))
    config = config_from_service(
        service, application(SEED_SCHEMA), "http://127.0.0.1:1", "X", allow_local_paths=True
    )
    with pytest.raises(WorkerError, match=r"cannot read the input .*nothing: not a folder"):
        asyncio.run(run_worker(config))
    missing_bucket = config_from_service(
        batch_service("s3://no-such-bucket/in.manifest", str(tmp_path / "out")),
        application(SEED_SCHEMA),
        "http://127.0.0.1:1",
        "X",
        allow_local_paths=True,
    )
    with pytest.raises(WorkerError, match=r"no-such-bucket/in\.manifest: bucket not found"):
        asyncio.run(run_worker(missing_bucket))


def test_batch_worker_command_exit_codes(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("1,2,3,4\n")
    log = tmp_path / "termination-log"
    recording = Recording()
    with serve(recording_model(recording)) as url:
        good = config_from_service(
            batch_service(str(tmp_path / "in"), str(tmp_path / "out")),
            application(SEED_SCHEMA),
            url,
            "W",
            worker_count=2,
            allow_local_paths=True,
        )
        env = {
            "INFEROPS_BATCH_CONFIG": config_to_env_json(good),
            "JOB_COMPLETION_INDEX": "1",
            "INFEROPS_BATCH_WORKERS": "2",
            "INFEROPS_TERMINATION_LOG": str(log),
            "PATH": "/usr/bin:/bin",
        }
        done = subprocess.run(
            [sys.executable, "-m", "inferops.cli", "batch-worker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        # Worker 1 of 2 has no source here: nothing to write, but a summary all the same.
        assert (
            json.loads(done.stdout)
            == json.loads(log.read_text())
            == {"total": 0, "succeeded": 0, "failed": 0, "manifests": []}
        )
        env["JOB_COMPLETION_INDEX"] = "0"
        done = subprocess.run(
            [sys.executable, "-m", "inferops.cli", "batch-worker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(log.read_text())["total"] == 1
    env["INFEROPS_BATCH_CONFIG"] = env["INFEROPS_BATCH_CONFIG"].replace(
        str(tmp_path / "in"), str(tmp_path / "gone")
    )
    done = subprocess.run(
        [sys.executable, "-m", "inferops.cli", "batch-worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"inferops batch-worker: cannot read the input {tmp_path / 'gone'}: "
        f"{tmp_path / 'gone'}: not a folder"
    )
    assert json.loads(log.read_text()) == {"error": done.stderr.strip().split(": ", 1)[1]}


def test_unwritable_output_is_fatal(s3: Any, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("1,2,3,4\n")
    recording = Recording()
    with serve(recording_model(recording)) as url:
        config = config_from_service(
            batch_service(str(tmp_path / "in"), "s3://no-such-bucket/out/"),
            application(SEED_SCHEMA),
            url,
            "U",
            allow_local_paths=True,
        )
        # Found at start, when the worker looks for manifests of an earlier run of itself.
        with pytest.raises(
            WorkerError,
            match=re.escape(
                "cannot read this worker's earlier manifests: "
                "s3://no-such-bucket/out/infer-result-U.workers: bucket not found"
            ),
        ):
            asyncio.run(run_worker(config))
    assert recording.requests == []
