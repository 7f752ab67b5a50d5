"""The CLI's YAML writer: strings any reader could retype are quoted, no aliases, round trip."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from inferops.yaml_out import PlainDumper, dump, dump_all

# Strings a YAML 1.2 core-schema reader, a YAML 1.1 reader or go-yaml (kubectl) could take
# for a null, bool, int or float.
QUOTED = [
    "0037191215162e10",  # a config hash: 3.7191215162e+20 to kubectl
    "79958112164791e7",
    "1e3",
    "1E3",
    "1e+3",
    "1e-3",
    "-1e3",
    ".5e3",
    "0x1F",
    "0X1f",
    "-0x1F",
    "0o17",
    "0O17",
    "0b101",
    "0B11",
    "017",
    "09",
    "0009",
    "00",
    "1_000",
    "1_000.5",
    "1",
    "-1",
    "+1",
    "0",
    "+0",
    "1.0",
    "1.",
    "-.5",
    ".5",
    "+.5",
    "3.14159",
    ".inf",
    ".Inf",
    "-.INF",
    "+.inf",
    ".nan",
    ".NaN",
    ".NAN",
    "yes",
    "Yes",
    "YES",
    "no",
    "No",
    "NO",
    "on",
    "On",
    "ON",
    "off",
    "Off",
    "OFF",
    "y",
    "Y",
    "n",
    "N",
    "true",
    "True",
    "TRUE",
    "false",
    "False",
    "FALSE",
    "null",
    "Null",
    "NULL",
    "~",
    "",
    "12:30",
    "1:20:30",
    "-12:30",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "=",
    "<<",
]
PLAIN = [
    "abc",
    "v1.2.3",
    "1.2.3",
    "1.0.0",
    "e10",
    "1e",
    "0x",
    "0xG",
    "0o8",
    "0b2",
    "1e3x",
    "iris-online",
    "cpu.2u4g",
    "4Gi",
    "250m",
    "http://127.0.0.1:8080",
    "/health",
    "337a386bb5ed2a3c",
    "nan",
    "inf",
    "yess",
    "Nope",
    "1-0-0",
    "app.kubernetes.io/name",
]


def _plain(text: str) -> bool:
    """Whether `dump` writes the string as a plain (unquoted) scalar."""
    return dump(text) == f"{text}\n...\n" or dump(text) == f"{text}\n"


@pytest.mark.parametrize("text", QUOTED)
def test_strings_a_reader_could_retype_are_quoted(text: str) -> None:
    out = dump({"k": text})
    assert out in (f"k: '{text}'\n", f'k: "{text}"\n'), out
    assert yaml.safe_load(out) == {"k": text}


@pytest.mark.parametrize("text", PLAIN)
def test_ordinary_strings_stay_plain(text: str) -> None:
    assert dump({"k": text}) == f"k: {text}\n"


@pytest.mark.parametrize("text", [t for t in QUOTED if t])
def test_keys_are_quoted_too(text: str) -> None:
    out = dump({text: "v"})
    assert out in (f"'{text}': v\n", f'"{text}": v\n'), out
    assert yaml.safe_load(out) == {text: "v"}


# A YAML 1.2 core-schema reader, written independently of the writer's table.
CORE_12 = [
    r"null|Null|NULL|~|",
    r"true|True|TRUE|false|False|FALSE",
    r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+",
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?",
    r"[-+]?\.(inf|Inf|INF)|\.nan|\.NaN|\.NAN",
]


def _core_12_retypes(text: str) -> bool:
    return any(re.fullmatch(pattern, text) for pattern in CORE_12)


@pytest.mark.parametrize("text", [*QUOTED, *PLAIN])
def test_no_plain_scalar_is_a_yaml_12_non_string(text: str) -> None:
    assert not (_plain(text) and _core_12_retypes(text))


def test_non_strings_stay_what_they_are() -> None:
    data = {"i": 1, "f": 2.5, "big": 1e20, "b": True, "none": None, "neg": -3}
    out = dump(data)
    assert out == "i: 1\nf: 2.5\nbig: 1.0e+20\nb: true\nnone: null\nneg: -3\n"
    assert yaml.safe_load(out) == data


def test_no_anchors_or_aliases() -> None:
    labels = {"app": "x", "version": "1e3"}
    obj = {
        "metadata": {"labels": labels},
        "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}}},
    }
    out = dump_all([obj, obj])
    assert "&" not in out and "*" not in out
    assert list(yaml.safe_load_all(out)) == [obj, obj]
    # PyYAML's own dumper would have shared them.
    assert "&id001" in yaml.safe_dump(obj)


def _documents() -> list[Any]:
    text = "\n".join(QUOTED + PLAIN)
    return [
        {"strings": QUOTED + PLAIN, "multi": text, "nested": [{"a": [1, "1", None]}]},
        {"kind": "ConfigMap", "data": {s: s for s in QUOTED + PLAIN if s}},
    ]


def test_round_trip() -> None:
    documents = _documents()
    assert list(yaml.safe_load_all(dump_all(documents))) == documents
    for document in documents:
        assert yaml.safe_load(dump(document)) == document


def test_dumper_is_safe() -> None:
    class Custom:
        pass

    with pytest.raises(yaml.representer.RepresenterError):
        yaml.dump(Custom(), Dumper=PlainDumper)
