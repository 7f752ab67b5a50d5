"""Bookkeeping: every source is reported once, and one odd source fails alone.

Output inside the input it lists (refused by validation, the worker config and the worker),
object keys that cannot name a result, resuming with another number of workers, names
too long for their result, and (in test_worker_local_paths) links and FIFOs.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from inferops.contract.batch_paths import output_inside_input
from inferops.contract.batch_worker import ConfigError, config_from_service
from inferops.validation import ValidationContext, validate_object
from inferops.worker.runner import WorkerError, run_local
from tests.worker_support import (
    SEED_SCHEMA,
    Recording,
    application,
    batch_service,
    manifest_lines,
    recording_model,
    serve,
)


@pytest.mark.parametrize(
    ("input_path", "output_path", "inside"),
    [
        ("s3://bkt/in/", "s3://bkt/in/out/", True),
        ("obs://bkt/in", "s3://bkt/in/out", True),  # one S3 API, two names
        ("s3://bkt/in/", "s3://bkt/in", True),  # the same folder
        ("s3://bkt", "s3://bkt/out/", True),  # the whole bucket is listed
        ("S3://bkt/in/", "s3://bkt/in/x/", True),
        ("s3://bkt/in/", "s3://bkt/input/", False),
        ("s3://bkt/in/", "s3://other/in/out/", False),
        ("s3://bkt/in/sub/", "s3://bkt/in/", False),  # results go beside, not under, sub/
        ("s3://bkt/in.manifest", "s3://bkt/", False),  # a manifest lists nothing
        ("s3://bkt/in/", "https://h.example/x", False),
        ("/data/in", "/data/in/out", True),
        ("/data/in/", "/data/./in/../in/out/", True),
        ("file:///data/in", "/data/in/out", True),
        ("in", "in/out", True),
        (".", "out", True),
        ("/data/in", "/data/input", False),
        ("in", "/data/in/out", False),  # relative and absolute: the worker compares them
    ],
)
def test_output_inside_input(input_path: str, output_path: str, inside: bool) -> None:
    assert output_inside_input(input_path, output_path) is inside


def test_validation_and_the_worker_config_refuse_output_inside_input() -> None:
    service = batch_service("s3://bkt/in/", "obs://bkt/in/results/")
    problems = validate_object(service, ValidationContext())
    assert [(p.path, p.message) for p in problems] == [
        (
            "spec.outputPath",
            "must not be inside inputPath (s3://bkt/in/): the workers would read their own "
            "results as inputs",
        )
    ]
    with pytest.raises(ConfigError, match=r"^output_path: must not be inside inputPath"):
        config_from_service(service, application(SEED_SCHEMA), "http://127.0.0.1:1", "t")
    fine = batch_service("s3://bkt/in.manifest", "s3://bkt/in/results/")
    assert validate_object(fine, ValidationContext()) == []


def test_a_run_never_reads_its_own_results(tmp_path: Path) -> None:
    """What happened before: the worker listed the results it was writing as inputs."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        (inputs / f"{i}.csv").write_text(f"{i},1,1,1\n")
    recording = Recording()
    with serve(recording_model(recording)) as url:
        with pytest.raises(ConfigError, match="output_path: must not be inside inputPath"):
            run_local(
                batch_service(str(inputs), str(inputs / "out")), application(SEED_SCHEMA), url, "O"
            )
        # Through a link the paths differ as written; the worker compares the real ones.
        os.symlink(inputs, tmp_path / "link")
        service = batch_service(str(inputs), str(tmp_path / "link" / "out"))
        with pytest.raises(WorkerError, match="output_path: must not be inside inputPath"):
            run_local(service, application(SEED_SCHEMA), url, "O")
    assert recording.requests == [] and sorted(p.name for p in inputs.iterdir()) == [
        "0.csv",
        "1.csv",
        "2.csv",
    ]


def test_odd_object_keys_fail_alone(s3: Any) -> None:
    s3.create_bucket(Bucket="data")
    keys = ["in/a.csv", "in/b/../c.csv", "in/x//y.csv", "in/./z.csv", "in//lead.csv"]
    for key in keys:
        s3.put_object(Bucket="data", Key=key, Body=b"1,2,3,4\n")
    recording = Recording()
    with serve(recording_model(recording)) as url:
        service = batch_service("s3://data/in/", "s3://data/out/")
        [summary] = run_local(service, application(SEED_SCHEMA), url, "K")
    body = s3.get_object(Bucket="data", Key="out/infer-result-K.manifest")["Body"].read()
    got = {line["source"]: line for line in map(json.loads, body.decode().splitlines())}
    assert got.pop("s3://data/in/a.csv")["result"] == "SUCCESSFUL"
    assert sorted(got) == sorted(f"s3://data/{key}" for key in keys[1:])
    assert {line["error_message"] for line in got.values()} == {
        "an object key with an empty, '.' or '..' path segment (its result would have no safe name)"
    }
    assert (summary.total, summary.succeeded, summary.failed) == (5, 1, 4)
    assert len(recording.requests) == 1


def test_resuming_with_another_worker_count_is_refused(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(30):
        (inputs / f"{i:02d}.csv").write_text(f"{i},1,1,1\n")
    service = batch_service(str(inputs), str(tmp_path / "out"))
    recording = Recording()
    with serve(recording_model(recording)) as url:
        first = run_local(service, application(SEED_SCHEMA), url, "N", 2)
        with pytest.raises(WorkerError) as refused:
            run_local(service, application(SEED_SCHEMA), url, "N", 3)
        again = run_local(service, application(SEED_SCHEMA), url, "N", 2)  # the same count
    assert str(refused.value) == (
        "task N was started with 2 workers and cannot resume with 3: its manifests hold "
        "shards of 2 (resuming would report sources twice or never); resume it with 2 "
        "workers (computeNodes), or run it again as a new task (a new BatchService, or "
        "another --task-id)"
    )
    assert sum(s.total for s in first) == sum(s.total for s in again) == 30
    sources = Counter(line["source"] for line in manifest_lines(tmp_path / "out", "N"))
    assert set(sources.values()) == {1} and len(sources) == 30
    assert len(recording.requests) == 30  # the resumed run redid nothing


def test_names_too_long_for_their_result_fail_before_the_model_is_called(
    tmp_path: Path, s3: Any
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    long_name = "n" * 248 + ".csv"  # a valid file name; its result name is 263 bytes
    (inputs / long_name).write_text("1,2,3,4\n")
    (inputs / "short.csv").write_text("1,2,3,4\n")
    s3.create_bucket(Bucket="data")
    long_key = "in/" + "k" * 1000 + ".csv"
    s3.put_object(Bucket="data", Key=long_key, Body=b"1,2,3,4\n")
    recording = Recording()
    with serve(recording_model(recording)) as url:
        run_local(
            batch_service(str(inputs), str(tmp_path / "out")), application(SEED_SCHEMA), url, "L"
        )
        service = batch_service("s3://data/in/", "s3://data/out/")
        run_local(service, application(SEED_SCHEMA), url, "S")
    local = {Path(line["source"]).name: line for line in manifest_lines(tmp_path / "out", "L")}
    assert local[long_name]["error_message"] == (
        "the result's file name would be 263 bytes, over the 255-byte limit"
    )
    assert local["short.csv"]["result"] == "SUCCESSFUL"
    body = s3.get_object(Bucket="data", Key="out/infer-result-S.manifest")["Body"].read()
    [line] = [json.loads(text) for text in body.decode().splitlines()]
    assert line["error_message"] == (
        "the result's object key would be 1034 bytes, over the 1024-byte limit"
    )
    assert len(recording.requests) == 1  # short.csv alone
