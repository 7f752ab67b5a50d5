"""Building a model request from a CSV row with a mapping (see `inferops.contract.request_schema`
for the mapping's grammar)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from inferops.contract.request_schema import (
    LEAF_TYPES,
    MAX_SCHEMA_DEPTH,
    JsonObject,
    node_type,
    valid_index,
)


class RowError(ValueError):
    """A CSV row value that cannot be given the type its mapping leaf asks for."""


def build_request(mapping: JsonObject, row: Sequence[str]) -> JsonObject:
    """The request body for one CSV row.

    A leaf takes column `index`, coerced to its type; a leaf whose index is missing, not a
    non-negative integer or past the end of the row is left out. A value that cannot be
    coerced raises RowError (the row fails, the others go on).
    """
    body = _build(mapping, row, 0)
    return body if isinstance(body, dict) else {}


_ABSENT = object()


def _build(node: JsonObject, row: Sequence[str], depth: int) -> Any:
    if depth > MAX_SCHEMA_DEPTH:
        return _ABSENT
    kind = node_type(node)
    if kind in LEAF_TYPES:
        index = node.get("index")
        if not isinstance(index, int) or not valid_index(index) or index >= len(row):
            return _ABSENT
        return coerce(row[index], str(kind), index)
    if kind == "array" or "items" in node:
        items = node.get("items")
        templates = items if isinstance(items, list) else [items] if isinstance(items, dict) else []
        values = [_build(t, row, depth + 1) for t in templates if isinstance(t, dict)]
        kept = [v for v in values if v is not _ABSENT]
        return kept if kept else _ABSENT
    properties = node.get("properties")
    if isinstance(properties, dict):
        out = {}
        for name, child in properties.items():
            if isinstance(child, dict):
                value = _build(child, row, depth + 1)
                if value is not _ABSENT:
                    out[name] = value
        return out if out or depth == 0 else _ABSENT
    return _ABSENT


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def coerce(text: str, kind: str, column: int) -> Any:
    """A CSV cell as a JSON value of the given schema type.

    A RowError names the column, never the cell: the message goes into the output manifest,
    and the cell may be anything the source held (a file a link pointed at, a page an URL
    answered with)."""
    if kind == "string":
        return text
    value = text.strip()
    if kind == "boolean":
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise RowError(f"column {column}: not a boolean")
    try:
        number = float(value)
    except ValueError:
        raise RowError(f"column {column}: not a {kind}") from None
    if not math.isfinite(number):
        raise RowError(f"column {column}: not a finite {kind}")
    if kind == "integer":
        if not number.is_integer():
            raise RowError(f"column {column}: not an integer")
        return int(number)
    # Integral text stays an integer ("5" -> 5); JSON compares 5 and 5.0 equal either way.
    try:
        return int(value)
    except ValueError:
        return number


RowBuilder = Callable[[Sequence[str]], JsonObject]
_Part = Callable[[Sequence[str]], Any]


def compile_mapping(mapping: JsonObject) -> RowBuilder:
    """`build_request` with the mapping walked once: the returned function gives the same
    body (or RowError) for every row, without re-reading the schema per row (the batch
    worker builds one body per CSV row)."""
    part = compile_parts(mapping, leaf_part)

    def build(row: Sequence[str]) -> JsonObject:
        body = part(row)
        return body if isinstance(body, dict) else {}

    return build


def _absent(row: Sequence[str]) -> Any:
    return _ABSENT


def leaf_part(index: int, kind: str) -> _Part:
    """The value of column `index` as a `kind`, or _ABSENT past the end of the row."""

    def leaf(row: Sequence[str]) -> Any:
        if index >= len(row):
            return _ABSENT
        text = row[index]
        # With a "." in it, a number is what float() makes of it (coerce would try int()
        # first, which refuses any ".", and raising that refusal costs more than the rest
        # of the row). Anything else, or a float() failure, goes to coerce for its message.
        if kind == "number" and "." in text:
            try:
                number = float(text)
            except ValueError:
                return coerce(text, kind, index)
            if number - number == 0.0:  # finite; else coerce says why not
                return number
        return coerce(text, kind, index)

    return leaf


def compile_parts(mapping: JsonObject, make_leaf: Callable[[int, str], _Part]) -> _Part:
    """The mapping's structure as nested functions of a row, with `make_leaf(index, kind)`
    at every leaf that has a valid index (encoding.py swaps in markers of its own)."""
    return _compile(mapping, 0, make_leaf)


def _compile(node: JsonObject, depth: int, make_leaf: Callable[[int, str], _Part]) -> _Part:
    # Mirrors _build branch for branch; tests check that the two always agree.
    if depth > MAX_SCHEMA_DEPTH:
        return _absent
    kind = node_type(node)
    if kind in LEAF_TYPES:
        index = node.get("index")
        if not isinstance(index, int) or not valid_index(index):
            return _absent
        return make_leaf(index, str(kind))
    if kind == "array" or "items" in node:
        items = node.get("items")
        templates = items if isinstance(items, list) else [items] if isinstance(items, dict) else []
        parts = [_compile(t, depth + 1, make_leaf) for t in templates if isinstance(t, dict)]

        def array(row: Sequence[str]) -> Any:
            kept = [v for v in (p(row) for p in parts) if v is not _ABSENT]
            return kept if kept else _ABSENT

        return array
    properties = node.get("properties")
    if isinstance(properties, dict):
        fields = [
            (name, _compile(child, depth + 1, make_leaf))
            for name, child in properties.items()
            if isinstance(child, dict)
        ]
        top = depth == 0

        def obj(row: Sequence[str]) -> Any:
            out = {}
            for name, part in fields:
                value = part(row)
                if value is not _ABSENT:
                    out[name] = value
            return out if out or top else _ABSENT

        return obj
    return _absent
