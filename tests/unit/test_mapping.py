"""The CSV mapping: generated exactly as the batch seed shows, and applied to CSV rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from inferops.contract.request_schema import (
    file_property,
    generate_mapping,
    input_type,
    mapped_columns,
    request_schema,
    schema_problems,
    select_api,
)
from inferops.worker.mapping import RowError, build_request

DATA = Path(__file__).parent / "data"
SEED_CONFIG = json.loads((DATA / "seed_config.json").read_text())
SEED_MAPPING = json.loads((DATA / "seed_mapping.json").read_text())
SEED_ROWS = ["5.1,3.5,1.4,0.2", "4.9,3.0,1.4,0.2", "4.7,3.2,1.3,0.2"]


def seed_body(a: float, b: float, c: float, d: float) -> dict[str, Any]:
    return {"data": {"req_data": [{"input_1": a, "input_2": b, "input_3": c, "input_4": d}]}}


def test_seed_mapping_is_generated_exactly() -> None:
    assert generate_mapping(request_schema(select_api(SEED_CONFIG))) == SEED_MAPPING


def test_generation_leaves_the_schema_untouched() -> None:
    schema = request_schema(select_api(SEED_CONFIG))
    before = json.dumps(schema)
    generate_mapping(schema)
    assert json.dumps(schema) == before


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (SEED_ROWS[0], seed_body(5.1, 3.5, 1.4, 0.2)),
        (SEED_ROWS[1], seed_body(4.9, 3.0, 1.4, 0.2)),
        (SEED_ROWS[2], seed_body(4.7, 3.2, 1.3, 0.2)),
    ],
)
def test_seed_rows_become_the_seed_request(row: str, expected: dict[str, Any]) -> None:
    body = build_request(SEED_MAPPING, row.split(","))
    assert body == expected
    # Byte-for-byte equivalent as JSON: the same text once keys are in the same order.
    assert json.dumps(body, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_seed_first_row_text() -> None:
    body = build_request(SEED_MAPPING, SEED_ROWS[0].split(","))
    assert json.dumps(body) == (
        '{"data": {"req_data": [{"input_1": 5.1, "input_2": 3.5, "input_3": 1.4, "input_4": 0.2}]}}'
    )


def leaf(kind: str, index: Any = 0) -> dict[str, Any]:
    return {"type": "object", "properties": {"v": {"type": kind, "index": index}}}


@pytest.mark.parametrize(
    ("mapping", "row", "expected"),
    [
        (leaf("string"), [" a b "], {"v": " a b "}),
        (leaf("integer"), ["7"], {"v": 7}),
        (leaf("integer"), ["7.0"], {"v": 7}),
        (leaf("number"), ["7"], {"v": 7}),
        (leaf("number"), [" 2.5 "], {"v": 2.5}),
        (leaf("boolean"), ["TRUE"], {"v": True}),
        (leaf("boolean"), ["0"], {"v": False}),
        (leaf("number", 3), ["1"], {}),  # past the end of the row: left out
        (leaf("number", -1), ["1"], {}),  # negative index: left out
        (leaf("number", "0"), ["1"], {}),  # not an integer: left out
        (leaf("number", True), ["1"], {}),  # a boolean is not an index
        (leaf("number", None), ["1"], {}),
        ({"type": "object", "properties": {"v": {"type": "number"}}}, ["1"], {}),
        (
            {
                "type": "object",
                "properties": {
                    "a": {"type": "number", "index": 1},
                    "b": {"type": "string", "index": 0},
                },
            },
            ["x", "2"],
            {"a": 2, "b": "x"},
        ),
        (
            {
                "type": "object",
                "properties": {"l": {"type": "array", "items": {"type": "integer", "index": 0}}},
            },
            ["4"],
            {"l": [4]},
        ),
        (
            {
                "type": "object",
                "properties": {"o": {"type": "object", "properties": {"x": {"type": "number"}}}},
            },
            ["4"],
            {},
        ),
    ],
)
def test_build_request_table(
    mapping: dict[str, Any], row: list[str], expected: dict[str, Any]
) -> None:
    assert build_request(mapping, row) == expected


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("number", "abc"),
        ("integer", "1.5"),
        ("boolean", "maybe"),
        ("number", "nan"),
        ("number", "inf"),
        ("integer", ""),
    ],
)
def test_values_that_do_not_coerce_fail_the_row(kind: str, value: str) -> None:
    with pytest.raises(RowError, match="column 0"):
        build_request(leaf(kind), [value])


def test_input_type_and_file_property() -> None:
    file_schema = {"type": "object", "properties": {"images": {"type": "file"}}}
    assert input_type(file_schema) == "file"
    assert file_property(file_schema) == "images"
    assert input_type(request_schema(select_api(SEED_CONFIG))) == "json"
    assert file_property(None) is None


def test_mapped_columns() -> None:
    assert mapped_columns(SEED_MAPPING) == [0, 1, 2, 3]


def test_select_api_by_url_and_errors() -> None:
    config = {"apis": [{"method": "post", "url": "/a"}, {"method": "post", "url": "/b"}]}
    assert select_api(config, "/b")["url"] == "/b"
    assert select_api(config)["url"] == "/a"
    with pytest.raises(LookupError, match="no API with url '/c'"):
        select_api(config, "/c")
    with pytest.raises(LookupError):
        select_api({"model_type": "x"})


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ({"type": "tensor"}, "data.type"),
        ({"type": "object", "properties": []}, "data.properties"),
        ({"type": "object", "properties": {"a": 3}}, "data.properties.a"),
        ({"type": "array", "items": [{"type": "object"}, "x"]}, "data.items[1]"),
        ("not a schema", "data"),
    ],
)
def test_schema_problems_name_the_path(schema: Any, path: str) -> None:
    assert [p for p, _ in schema_problems(schema)] == [path]


def test_deep_schema_is_reported_not_crashing() -> None:
    schema: dict[str, Any] = {"type": "number", "index": 0}
    for _ in range(100):
        schema = {"type": "object", "properties": {"a": schema}}
    assert schema_problems(schema)
    assert build_request(schema, ["1"]) == {}
