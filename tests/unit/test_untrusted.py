"""The untrusted JSON and YAML readers: what they accept is what json/yaml give, and every
hostile shape is one UntrustedInputError with a one-line message."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from inferops.contract.untrusted import (
    MAX_DEPTH,
    UntrustedInputError,
    json_depth,
    load_json,
    load_yaml,
    load_yaml_documents,
)


def _billion_laughs() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        name, previous = chr(97 + i), chr(96 + i)
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]")
    return "\n".join(lines) + "\n"


def refused(load: Any, data: Any, **bounds: int) -> str:
    with pytest.raises(UntrustedInputError) as caught:
        load(data, **bounds)
    message = str(caught.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize(
    "text",
    [
        '{"data": {"req_data": [{"input_1": 5.1, "input_2": -3, "n": null, "b": true}]}}',
        '["[[[[[[[[[[", "]]]]", "\\"{{"]',
        "[" * MAX_DEPTH + "]" * MAX_DEPTH,
        '"\\ud83d\\ude00"',
        "12345678901234567890123",
        "1.5e300",
        "[]",
    ],
)
def test_json_accepts_what_json_accepts(text: str) -> None:
    assert load_json(text) == json.loads(text)
    assert load_json(text.encode()) == json.loads(text)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested deeper than 100 levels"),
        ('{"a":' * 1000 + "1" + "}" * 1000, "nested deeper than 100 levels"),
        ("[" * 100_000, "nested deeper than 100 levels"),
        ("9" * 5000, "more than 256 digits"),
        ('{"x": -' + "9" * 5000 + "}", "more than 256 digits"),
        ("0." + "1" * 300, "more than 256 digits"),
        ("1e400", "out of range"),
        ("NaN", "NaN is not JSON"),
        ("[-Infinity]", "-Infinity is not JSON"),
        ('"\\ud800"', "unpaired surrogate \\ud800"),
        ('{"\\udc00": 1}', "unpaired surrogate \\udc00"),
        (b"\xff\xfe", "not UTF-8 text"),
        ("{", "Expecting property name"),
        ("", "Expecting value"),
        ("[1] x", "Extra data"),
    ],
)
def test_json_refusals(data: str | bytes, message: str) -> None:
    assert message in refused(load_json, data)


def test_json_bounds_are_parameters() -> None:
    assert "larger than 10 bytes" in refused(load_json, "[" + "1," * 10 + "1]", max_bytes=10)
    # Characters that take several UTF-8 bytes count as their bytes.
    assert "larger than 10 bytes" in refused(load_json, '"ééééé"', max_bytes=10)
    assert "nested deeper than 2" in refused(load_json, "[[[]]]", max_depth=2)
    assert "more than 3 digits" in refused(load_json, "1234", max_number_digits=3)
    assert load_json("[[]]", max_depth=2) == [[]]


def test_json_depth_ignores_brackets_in_strings() -> None:
    assert json_depth('{"a": ["[", "\\"]{"]}') == 2
    assert json_depth("1") == 0
    assert json_depth("]]]]") == 0


YAML_CASES = [
    "apiVersion: v1\nkind: X\nmetadata: {name: a, labels: {x: '1'}}\n",
    "---\na: 1\n---\n---\nb: [1, {c: d}]\n",
    "a: &x {b: 1}\nc: *x\nd: {<<: *x, e: 2}\n",
    "a: 2001-02-03\nb: 0x1F\nc: 1:30\nd: .inf\ne: ~\n",
    "- " * 50 + "x\n",
    "",
]


@pytest.mark.parametrize("text", YAML_CASES)
def test_yaml_reads_what_safe_load_reads(text: str) -> None:
    assert load_yaml_documents(text) == list(yaml.safe_load_all(text))
    assert load_yaml_documents(text.encode()) == list(yaml.safe_load_all(text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: " + "[" * 10_000 + "]" * 10_000, "line 1: nested deeper than 100 levels"),
        ("a:\n" + "".join(" " * i + "b:\n" for i in range(1, 300)), "nested deeper than 100"),
        ("- " * 10_000 + "x", "nested deeper than 100 levels"),
        ("a: 1\nb: " + "9" * 5000, "line 2: a number has more than 256 digits"),
        ("a: 0x" + "f" * 300, "more than 256 digits"),
        ("a: " + "1:" * 200 + "1", "more than 256 digits"),
        ("a: !!int " + "1" * 300, "more than 256 digits"),
        ("a: &a [*a]", "alias refers to a node that contains it"),
        ("a: &a {b: *a}", "alias refers to a node that contains it"),
        (_billion_laughs(), "expands to more than 1000000 nodes"),
        (
            "a: &a " + "[" * 60 + "]" * 60 + "\nb: " + "[" * 50 + "*a" + "]" * 50,
            "line 2: nested deeper than 100 levels",
        ),
        ("a: 2001-02-30", "line 1: '2001-02-30' is not a valid timestamp"),
        ("a: !!int x", "'x' is not a valid int"),
        ("a: !!float x", "'x' is not a valid float"),
        ("a: !!bool x", "'x' is not a valid bool"),
        ("!!int ", "'' is not a valid int"),
        ("a: !!float", "'' is not a valid float"),
        ("\x1fa: 1", "line 1: unacceptable character #x001f"),
        ("a: 1\nb: \x00", "line 2: unacceptable character #x0000"),
        ("a: !!timestamp x", "'x' is not a valid timestamp"),
        ("a: !!binary xx", "failed to decode base64"),
        ("? [a]\n: b", "found unhashable key"),
        ("<<: 1", "expected a mapping or list of mappings for merging"),
        ("a: !!python/object/apply:os.system [ls]", "could not determine a constructor"),
        ('a: "\\ud800"', "unpaired surrogate \\ud800"),
        ("a: [", "line 1: expected the node content"),
        ("a: b\n c: d: e\n", "line 2: mapping values are not allowed here"),
        (b"a: \xff", "not UTF-8 text"),
    ],
)
def test_yaml_refusals(text: str | bytes, message: str) -> None:
    assert message in refused(load_yaml_documents, text)


def test_yaml_bounds_are_parameters() -> None:
    assert "larger than 5 bytes" in refused(load_yaml_documents, "a: bcdef", max_bytes=5)
    assert "nested deeper than 1" in refused(load_yaml_documents, "a: [b]", max_depth=1)
    assert "more than 2 digits" in refused(load_yaml_documents, "a: 123", max_number_digits=2)
    assert "more than 3 nodes" in refused(load_yaml_documents, "[a, b, c]", max_nodes=3)
    assert load_yaml_documents("a: [b]", max_depth=2) == [{"a": ["b"]}]


def test_error_carries_its_line() -> None:
    with pytest.raises(UntrustedInputError) as caught:
        load_yaml_documents("a: 1\nb: 2\nc: " + "[" * 200)
    assert caught.value.line == 3 and caught.value.problem == "nested deeper than 100 levels"


def test_load_yaml_is_one_document() -> None:
    assert load_yaml("a: 1") == {"a": 1}
    assert load_yaml("") is None
    assert "expected one YAML document, found 2" in refused(load_yaml, "a: 1\n---\nb: 2\n")
