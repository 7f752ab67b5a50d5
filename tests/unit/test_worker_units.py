"""The worker's small parts: config, names, listing order, manifest lines, mapping speed-up."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferops.api.catalog import BatchLimits
from inferops.contract.batch_worker import (
    ConfigError,
    config_from_env,
    config_from_service,
    config_to_env_json,
)
from inferops.storage import Storage, parse_location
from inferops.worker.client import Reply
from inferops.worker.csv_rows import is_json_type, json_line
from inferops.worker.encoding import compile_encoder
from inferops.worker.folders import walk_sorted
from inferops.worker.manifest import ManifestWriter, chunk_name, chunk_number, manifest_line
from inferops.worker.mapping import RowError, build_request, compile_mapping
from inferops.worker.sources import ResultNames, iter_shard, split_lines
from tests.worker_support import FILE_SCHEMA, SEED_SCHEMA, application, batch_service


def test_config_round_trips_through_the_job_environment() -> None:
    service = batch_service(
        "s3://bkt/in/",
        "obs://bkt/out/",
        concurrency=8,
        computeNodes=3,
        requestPath="/",
        storage={"endpoint": "http://minio:9000"},
    )
    config = config_from_service(
        service,
        application(SEED_SCHEMA),
        "http://127.0.0.1:8080",
        "abc123",
        limits=BatchLimits(manifest_max_lines=50),
    )
    assert (config.worker_count, config.concurrency, config.manifest_max_lines) == (3, 8, 50)
    assert (config.input_type, config.s3_endpoint, config.request_path) == (
        "json",
        "http://minio:9000",
        "/",
    )
    env = {
        "INFEROPS_BATCH_CONFIG": config_to_env_json(config),
        "JOB_COMPLETION_INDEX": "2",
        "INFEROPS_BATCH_WORKERS": "3",
    }
    again = config_from_env(env)
    assert again.worker_index == 2
    assert again == config.__class__(**{**config.__dict__, "worker_index": 2})


def test_config_of_a_file_input_app() -> None:
    service = batch_service("s3://bkt/images/", "s3://bkt/out/", app="images")
    config = config_from_service(
        service,
        application(FILE_SCHEMA, url="/predict"),
        "http://127.0.0.1:8080",
        "t",
        limits={"maxImageBytes": 5, "maxCsvBytes": 6},
    )
    assert (config.input_type, config.file_field, config.mapping) == ("file", "images", None)
    assert (config.request_path, config.max_image_bytes, config.max_csv_bytes) == ("/predict", 5, 6)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "INFEROPS_BATCH_CONFIG is not set"),
        ({"INFEROPS_BATCH_CONFIG": "{"}, "invalid JSON"),
        ({"INFEROPS_BATCH_CONFIG": "[]"}, "must be a JSON object"),
        ({"INFEROPS_BATCH_CONFIG": '{"nope": 1}'}, "unknown worker config fields: nope"),
        ({"INFEROPS_BATCH_CONFIG": '{"input_path": "x"}'}, "missing"),
    ],
)
def test_bad_environment_is_a_config_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_env(env)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0, -1])
def test_timeouts_must_be_finite_and_positive(value: float) -> None:
    service = batch_service("s3://bkt/in/", "s3://bkt/out/")
    with pytest.raises(ConfigError, match="request_timeout_seconds: must be a finite number > 0"):
        config_from_service(
            service,
            application(SEED_SCHEMA),
            "http://127.0.0.1:8080",
            "t",
            request_timeout_seconds=value,
        )


def test_config_checks_its_values() -> None:
    service = batch_service("/in", "/out")
    with pytest.raises(ConfigError, match=r"worker_index: 3 is not in 0\.\.worker_count-1"):
        config_from_service(service, application(SEED_SCHEMA), "http://x", "t", 3, 3)
    with pytest.raises(ConfigError, match=r"concurrency: must be an integer >= 1"):
        config_from_service(service, application(SEED_SCHEMA), "http://x", "t", concurrency=0)
    app = application(SEED_SCHEMA)
    app["spec"]["versions"][0]["version"] = "2.0.0"
    with pytest.raises(ConfigError, match=r"spec\.version: '1\.0\.0' is not a version"):
        config_from_service(service, app, "http://x", "t")


@pytest.mark.parametrize(
    ("concurrency", "io_threads", "expected"),
    [
        (1, None, 10),  # botocore's pool size at least
        (4, None, 10),
        (16, None, 32),  # a read and a write per request in flight
        (100, None, 64),  # capped
        (16, 5, 5),  # as configured
    ],
)
def test_storage_threads(concurrency: int, io_threads: int | None, expected: int) -> None:
    config = config_from_service(
        batch_service("/in", "/out"),
        application(SEED_SCHEMA),
        "http://x",
        "t",
        concurrency=concurrency,
        io_threads=io_threads,
    )
    assert config.storage_threads == expected
    assert config_from_env({"INFEROPS_BATCH_CONFIG": config_to_env_json(config)}) == config


def test_io_threads_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"io_threads: must be an integer >= 1, not 0"):
        config_from_service(
            batch_service("/in", "/out"), application(SEED_SCHEMA), "http://x", "t", io_threads=0
        )


def test_chunk_numbers_never_collide() -> None:
    for count in (1, 2, 3, 7):
        numbers = [chunk_number(k, i, count) for i in range(count) for k in range(20)]
        assert sorted(numbers) == list(range(20 * count))
    assert chunk_name("T", 0) == "infer-result-T.manifest"
    assert chunk_name("T", 4) == "infer-result-T_4.manifest"


def test_manifest_line_keys_and_order() -> None:
    assert manifest_line("s3://b/1.jpg", True, "s3://o/r.txt") == (
        '{"source": "s3://b/1.jpg", "result": "SUCCESSFUL", "inference-loc": "s3://o/r.txt"}'
    )
    assert manifest_line("x", False, "Download file failed: nope") == (
        '{"source": "x", "result": "FAILED", "error_message": "Download file failed: nope"}'
    )


def test_resume_counts_a_tampered_output_line_as_failed(tmp_path: Path) -> None:
    """The output folder is writable by the tenant: a line nested 1,000 deep in an earlier
    chunk used to crash every restart with RecursionError."""
    lines = [manifest_line("a", True, "r"), "[" * 1000 + "]" * 1000, "9" * 5000]
    (tmp_path / chunk_name("T", 0)).write_text("\n".join(lines) + "\n")
    writer = ManifestWriter(Storage(), parse_location(str(tmp_path)), "T", 0, 1, 100)
    assert writer.resume() == 3
    assert (writer.counts.succeeded, writer.counts.failed) == (1, 2)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000 + b"\n",
        b'{"a":\n' + b"9" * 5000 + b"}",
        b'{"a":\n NaN}',
    ],
)
def test_a_hostile_multiline_answer_becomes_a_text_line(body: bytes) -> None:
    """A model answering JSON nested 5,000 deep over several lines used to raise
    RecursionError in the worker; such an answer is kept as a JSON string."""
    line = json_line(Reply(body, "text/plain"))
    assert json.loads(line) == body.strip().decode()


def test_result_names_of_manifest_lines() -> None:
    names = ResultNames()
    got = [
        names.claim(n, line)
        for line, n in enumerate(["1.jpg", "1.jpg", "1.jpg_1", "x", "", "..", "1.jpg"])
    ]
    assert got == ["1.jpg", "1.jpg_1", "1.jpg_1_2", "x", "source", "source_5", "1.jpg_6"]
    assert len(set(got)) == len(got)


def test_local_listing_is_in_object_store_key_order(tmp_path: Path) -> None:
    names = ["a.txt", "a/x", "a-b", "a0", "b/c/d", "b/c.txt", "B", "a/y/z"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    os.symlink(tmp_path / "b", tmp_path / "link")  # directory links are not followed
    assert list(walk_sorted(str(tmp_path), str(tmp_path))) == sorted(
        [(name, None) for name in names] + [("link", "a symbolic link to a folder (not followed)")]
    )


def test_shards_are_disjoint_and_cover_the_listing(tmp_path: Path) -> None:
    for i in range(23):
        (tmp_path / f"{i:02d}.csv").write_text("1\n")
    storage = Storage()
    shards = [[s.position for s in iter_shard(storage, str(tmp_path), i, 4)] for i in range(4)]
    assert sorted(p for shard in shards for p in shard) == list(range(23))
    assert all(p % 4 == i for i, shard in enumerate(shards) for p in shard)


def test_split_lines_cuts_overlong_lines() -> None:
    chunks = [b"ab", b"c\nde", b"f" * 50, b"g\n\nlast"]
    # The long line keeps only what it had when it went over (its start, for the report).
    assert list(split_lines(chunks, 10)) == [
        (b"abc", False),
        (b"de" + b"f" * 50, True),
        (b"", False),
        (b"last", False),
    ]
    [(start, too_long)] = split_lines([b"x" * 5000], 10)
    assert too_long and start == b"x" * 200


def test_manifest_input_streams_from_storage(tmp_path: Path) -> None:
    manifest = tmp_path / "in.manifest"
    manifest.write_text("\n".join(json.dumps({"source": f"/d/{i}.csv"}) for i in range(5)))
    sources = list(iter_shard(Storage(), str(manifest), 1, 2))
    assert [(s.position, s.shard_index, s.text) for s in sources] == [
        (1, 0, "/d/1.csv"),
        (3, 1, "/d/3.csv"),
    ]
    assert parse_location(str(manifest)).scheme == "file"


# ---- compile_mapping is build_request, only faster ----------------------------------------

LEAF = st.fixed_dictionaries(
    {"type": st.sampled_from(["string", "number", "integer", "boolean"])},
    optional={"index": st.one_of(st.integers(-1, 5), st.booleans(), st.text(max_size=1))},
)


def _nodes(children: Any) -> Any:
    return st.one_of(
        st.fixed_dictionaries(
            {
                "type": st.just("object"),
                "properties": st.dictionaries(st.text(max_size=3), children, max_size=3),
            }
        ),
        st.fixed_dictionaries(
            {"type": st.just("array"), "items": st.one_of(children, st.lists(children, max_size=3))}
        ),
    )


MAPPINGS = st.recursive(LEAF, _nodes, max_leaves=10)
CELLS = st.one_of(
    st.sampled_from(
        [
            "5.1",
            "-0.25",
            "+.5",
            "5.",
            "7",
            " 8 ",
            "1e3",
            "abc",
            "",
            "true",
            "no",
            "nan",
            "inf",
            "1_000",
            "\u0665.\u0661",
            "1" * 400 + ".5",
            "0x10",
            "3.0",
        ]
    ),
    st.text(max_size=4),
)


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return "ok", json.dumps(fn(*args))
    except RowError as exc:
        return "error", str(exc)


@settings(max_examples=400, deadline=None)
@given(mapping=MAPPINGS, row=st.lists(CELLS, max_size=6))
def test_compiled_mapping_equals_build_request(mapping: dict[str, Any], row: list[str]) -> None:
    assert _outcome(compile_mapping(mapping), row) == _outcome(build_request, mapping, row)


# ---- compile_encoder gives the bytes of the general path ------------------------------------


def _bytes(mapping: dict[str, Any], row: list[str]) -> Any:
    try:
        return "ok", json.dumps(build_request(mapping, row), separators=(",", ":")).encode()
    except RowError as exc:
        return "error", str(exc)


def _encoded(mapping: dict[str, Any], row: list[str]) -> Any:
    try:
        return "ok", compile_encoder(mapping)(row)
    except RowError as exc:
        return "error", str(exc)


@settings(max_examples=400, deadline=None)
@given(mapping=MAPPINGS, row=st.lists(CELLS, max_size=6))
def test_encoder_equals_the_json_of_build_request(mapping: dict[str, Any], row: list[str]) -> None:
    assert _encoded(mapping, row) == _bytes(mapping, row)


def _obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


def _leaf(kind: str, index: int) -> dict[str, Any]:
    return {"type": kind, "index": index}


@pytest.mark.parametrize(
    ("mapping", "row"),
    [
        (
            SEED_MAPPING_FOR_ENCODER := _obj(
                data=_obj(
                    req_data={
                        "type": "array",
                        "items": [
                            _obj(
                                input_1=_leaf("number", 0),
                                input_2=_leaf("number", 1),
                                input_3=_leaf("number", 2),
                                input_4=_leaf("number", 3),
                            )
                        ],
                    }
                )
            ),
            ["5.1", "3.5", "1.4", "0.2"],
        ),
        (SEED_MAPPING_FOR_ENCODER, ["5.1", "3.5"]),  # short row: leaves left out
        (SEED_MAPPING_FOR_ENCODER, ["5.10", "+.5", "7", "1e400"]),  # RowError on column 3
        (_obj(**{"%s": _leaf("string", 0), "100%": _leaf("integer", 1)}), ["a%sb", "12"]),
        (_obj(**{"\x000\x00": _leaf("string", 0)}), ["looks like a hole"]),
        (_obj(**{"\x000\x00": _leaf("string", 1), "b": _leaf("string", 0)}), ["x", "y"]),
        (_obj(name=_leaf("string", 0), ok=_leaf("boolean", 1)), ['Zoë "quoted"\n', "Yes"]),
        (_obj(a=_leaf("number", 1), b=_leaf("string", 0)), ["x%sy\u00e9", " 1.50 "]),  # fast
        (_obj(a=_leaf("number", 0), b=_leaf("string", 1)), ["7", "x"]),  # no ".": general path
        (_obj(a=_leaf("number", 0)), ["1.5e400"]),  # not finite: the general path's RowError
        (_obj(a=_leaf("number", 0)), ["\u0665.\u0661"]),  # float() reads other digits too
        (_obj(empty=_obj(), none=_leaf("number", -1)), ["1"]),  # no holes: a constant body
        ({"type": "array", "items": _leaf("number", 0)}, ["1"]),  # not an object: {}
    ],
)
def test_encoder_table(mapping: dict[str, Any], row: list[str]) -> None:
    assert _encoded(mapping, row) == _bytes(mapping, row)


def test_invalid_objects_are_one_line_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"^BatchService: spec\.inputPath: String should match"):
        config_from_service(
            batch_service("ftp://x", "/out"), application(SEED_SCHEMA), "http://x", "t"
        )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON ; charset=utf-8", True),
        ("application/problem+json", True),
        ("application/jsonl", False),
        ("application/json-seq", False),
        ("text/plain", False),
        ("", False),
    ],
)
def test_json_content_types(header: str, expected: bool) -> None:
    assert is_json_type(header) is expected
