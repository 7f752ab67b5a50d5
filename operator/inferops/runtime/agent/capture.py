"""How a request or response body and a timestamp are written into a record.

Pure functions (no aiohttp), so what a record holds can be tested without a server: a JSON
body is kept as its JSON value, anything else as base64, and a body over the capture cap
(decoded size included, so a small gzip bomb cannot blow up the buffer) as null.
"""

from __future__ import annotations

import base64
import json
import zlib
from datetime import UTC, datetime
from typing import Any


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def is_json_type(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or mime.endswith("+json")


def _decode(body: bytes, encoding: str, cap: int) -> bytes | None:
    """The body without its Content-Encoding (gzip/deflate); None when it inflates over
    the cap; the raw bytes for encodings it does not know or cannot decode."""
    encoding = encoding.strip().lower()
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return body
    try:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header
        data = inflater.decompress(body, cap + 1)
    except zlib.error:
        if encoding != "deflate":
            return body
        try:  # "deflate" is sometimes sent raw, without the zlib header
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            data = inflater.decompress(body, cap + 1)
        except zlib.error:
            return body
    if len(data) > cap or inflater.unconsumed_tail:
        return None
    return data


def capture_body(body: bytes, content_type: str, content_encoding: str, cap: int) -> Any:
    """How a body is recorded: the JSON value for a JSON body that parses, else
    `{"base64": ...}`; None for an empty body or one over `cap` bytes."""
    if not body or len(body) > cap:
        return None
    data = _decode(body, content_encoding, cap)
    if data is None:
        return None
    if is_json_type(content_type):
        try:
            return json.loads(data, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError):
            pass
    return {"base64": base64.b64encode(data).decode("ascii")}


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
