"""The app request schema as the platform reads it: input type, file field and CSV mapping.

The mapping format is the request's JSON schema with an `index` (a CSV column, from 0) on
every string, number, integer and boolean leaf; the batch seed's example is the contract.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

JsonObject = dict[str, Any]
InputType = Literal["file", "json"]

LEAF_TYPES = frozenset({"string", "number", "integer", "boolean"})
KNOWN_TYPES = LEAF_TYPES | {"object", "array", "file", "null"}
MAX_SCHEMA_DEPTH = 32
WEBSOCKET = "websocket"  # the `transport` parameter of a WebSocket API's request Content-type


class RowError(ValueError):
    """A CSV row value that cannot be given the type its mapping leaf asks for."""


def schema_problems(schema: Any, path: str = "data") -> list[tuple[str, str]]:
    """(path, message) for every part of a request schema the worker could not walk."""
    return list(_schema_problems(schema, path, 0))


def _schema_problems(node: Any, path: str, depth: int) -> Iterator[tuple[str, str]]:
    if depth > MAX_SCHEMA_DEPTH:
        yield path, f"schema nests deeper than {MAX_SCHEMA_DEPTH} levels"
        return
    if not isinstance(node, dict):
        yield path, "must be a JSON schema object"
        return
    kind = node.get("type")
    if kind is not None and (not isinstance(kind, str) or kind not in KNOWN_TYPES):
        yield f"{path}.type", f"unknown type {kind!r}; use one of {sorted(KNOWN_TYPES)}"
    properties = node.get("properties")
    if properties is not None:
        if not isinstance(properties, dict):
            yield f"{path}.properties", "must be an object of property schemas"
        else:
            for name, child in properties.items():
                yield from _schema_problems(child, f"{path}.properties.{name}", depth + 1)
    items = node.get("items")
    if isinstance(items, list):
        for i, child in enumerate(items):
            yield from _schema_problems(child, f"{path}.items[{i}]", depth + 1)
    elif items is not None:
        yield from _schema_problems(items, f"{path}.items", depth + 1)


def file_property(schema: Any) -> str | None:
    """The first top-level property of `"type": "file"` (the multipart form field), if any."""
    if not isinstance(schema, dict):
        return None
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return None
    for name, child in properties.items():
        if isinstance(child, dict) and child.get("type") == "file":
            return str(name)
    return None


def input_type(schema: Any) -> InputType:
    """file when the request schema has a file property, json otherwise (DESIGN.md)."""
    return "file" if file_property(schema) is not None else "json"


def generate_mapping(schema: JsonObject) -> JsonObject:
    """The schema with `index` 0, 1, 2, ... on its leaves in document order."""
    mapping = copy.deepcopy(schema)
    counter = iter(range(1_000_000))
    for leaf in _leaves(mapping):
        leaf["index"] = next(counter)
    return mapping


def _type(node: JsonObject) -> str | None:
    kind = node.get("type")
    return kind if isinstance(kind, str) else None


def _children(node: JsonObject) -> Iterator[JsonObject]:
    properties = node.get("properties")
    if isinstance(properties, dict):
        yield from (c for c in properties.values() if isinstance(c, dict))
    items = node.get("items")
    if isinstance(items, list):
        yield from (c for c in items if isinstance(c, dict))
    elif isinstance(items, dict):
        yield items


def _leaves(node: JsonObject, depth: int = 0) -> Iterator[JsonObject]:
    if depth > MAX_SCHEMA_DEPTH:
        return
    if _type(node) in LEAF_TYPES:
        yield node
        return
    for child in _children(node):
        yield from _leaves(child, depth + 1)


def mapped_columns(mapping: JsonObject) -> list[int]:
    """The valid CSV column indexes a mapping uses, in document order."""
    return [leaf["index"] for leaf in _leaves(mapping) if _valid_index(leaf.get("index"))]


def _valid_index(index: Any) -> bool:
    return isinstance(index, int) and not isinstance(index, bool) and index >= 0


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
    kind = _type(node)
    if kind in LEAF_TYPES:
        index = node.get("index")
        if not isinstance(index, int) or not _valid_index(index) or index >= len(row):
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
    """A CSV cell as a JSON value of the given schema type."""
    if kind == "string":
        return text
    value = text.strip()
    if kind == "boolean":
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise RowError(f"column {column}: {text!r} is not a boolean")
    try:
        number = float(value)
    except ValueError:
        raise RowError(f"column {column}: {text!r} is not a {kind}") from None
    if not math.isfinite(number):
        raise RowError(f"column {column}: {text!r} is not a finite {kind}")
    if kind == "integer":
        if not number.is_integer():
            raise RowError(f"column {column}: {text!r} is not an integer")
        return int(number)
    # Integral text stays an integer ("5" -> 5); JSON compares 5 and 5.0 equal either way.
    try:
        return int(value)
    except ValueError:
        return number


def select_api(config: Any, url: str | None = None) -> JsonObject:
    """The API entry of a config.json (a list of APIs, or an object with `apis`)."""
    apis = config.get("apis") if isinstance(config, dict) else config
    if not isinstance(apis, list) or not apis:
        raise LookupError("config has no `apis` list")
    candidates = [a for a in apis if isinstance(a, dict)]
    if url is None:
        if not candidates:
            raise LookupError("config has no API objects")
        return candidates[0]
    for api in candidates:
        if api.get("url") == url:
            return api
    known = ", ".join(str(a.get("url")) for a in candidates)
    raise LookupError(f"no API with url {url!r}; the config has: {known}")


def request_schema(api: JsonObject) -> JsonObject:
    """The JSON schema of an API's request body (empty object schema when undeclared)."""
    request = api.get("request")
    data = request.get("data") if isinstance(request, dict) else None
    return data if isinstance(data, dict) else {"type": "object", "properties": {}}


def is_websocket_api(api: Any) -> bool:
    """Whether a config.json API is served over WebSocket rather than plain HTTP.

    A WebSocket API says so in its request Content-type with the parameter
    `transport=websocket`, e.g. `application/json; transport=websocket`: the messages are
    JSON in the request schema's shape, and media-type readers still see JSON.
    """
    request = api.get("request") if isinstance(api, dict) else None
    content_type = request.get("Content-type") if isinstance(request, dict) else None
    if not isinstance(content_type, str):
        return False
    for parameter in content_type.split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "transport" and value.strip().strip('"').lower() == WEBSOCKET:
            return True
    return False


def websocket_api_problem(api: JsonObject) -> tuple[str, str] | None:
    """(field, message) when a WebSocket API cannot be served as declared, else None."""
    if str(api.get("method", "")).lower() != "get":
        return "method", "a WebSocket API must use method get (the WebSocket handshake is a GET)"
    if file_property(request_schema(api)) is not None:
        return "request.data", "a WebSocket API takes JSON text messages, not files"
    return None


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
    kind = _type(node)
    if kind in LEAF_TYPES:
        index = node.get("index")
        if not isinstance(index, int) or not _valid_index(index):
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
