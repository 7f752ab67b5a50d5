"""The request-schema grammar both planes read: input type, file field, CSV mapping, the
API a service calls and whether it is a WebSocket API.

The operator validates apps and builds worker configs with it; the batch worker and the
model server read requests with it. The mapping format is the request's JSON schema with
an `index` (a CSV column, from 0) on every string, number, integer and boolean leaf; the
batch seed's example is the contract.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, Literal

JsonObject = dict[str, Any]
InputType = Literal["file", "json"]

LEAF_TYPES = frozenset({"string", "number", "integer", "boolean"})
KNOWN_TYPES = LEAF_TYPES | {"object", "array", "file", "null"}
MAX_SCHEMA_DEPTH = 32
WEBSOCKET = "websocket"  # the `transport` parameter of a WebSocket API's request Content-type


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
    """file when the request schema has a file property, json otherwise (docs/design.md)."""
    return "file" if file_property(schema) is not None else "json"


def generate_mapping(schema: JsonObject) -> JsonObject:
    """The schema with `index` 0, 1, 2, ... on its leaves in document order."""
    mapping = copy.deepcopy(schema)
    counter = iter(range(1_000_000))
    for leaf in leaves(mapping):
        leaf["index"] = next(counter)
    return mapping


def node_type(node: JsonObject) -> str | None:
    kind = node.get("type")
    return kind if isinstance(kind, str) else None


def children(node: JsonObject) -> Iterator[JsonObject]:
    properties = node.get("properties")
    if isinstance(properties, dict):
        yield from (c for c in properties.values() if isinstance(c, dict))
    items = node.get("items")
    if isinstance(items, list):
        yield from (c for c in items if isinstance(c, dict))
    elif isinstance(items, dict):
        yield items


def leaves(node: JsonObject, depth: int = 0) -> Iterator[JsonObject]:
    if depth > MAX_SCHEMA_DEPTH:
        return
    if node_type(node) in LEAF_TYPES:
        yield node
        return
    for child in children(node):
        yield from leaves(child, depth + 1)


def mapped_columns(mapping: JsonObject) -> list[int]:
    """The valid CSV column indexes a mapping uses, in document order."""
    return [leaf["index"] for leaf in leaves(mapping) if valid_index(leaf.get("index"))]


def valid_index(index: Any) -> bool:
    return isinstance(index, int) and not isinstance(index, bool) and index >= 0


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
