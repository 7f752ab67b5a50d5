"""How a request or response body and a timestamp are written into a record.

Bodies stream through the proxy; a `BodyTap` keeps only the first `cap` bytes of each and
counts the rest, so a record never costs more than the cap whatever the body's size.
`capture_body` turns what was kept into the record's value: a whole JSON body as its JSON
value, anything else (a truncated body too) as base64, always with `truncated` saying
whether the record holds less than the body (decoded size included, so a small gzip bomb
cannot blow up the buffer). Pure functions and no aiohttp, so what a record holds can be
tested without a server.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class BodyTap:
    """The first `cap` bytes of a body fed to it chunk by chunk, and the body's size."""

    __slots__ = ("_kept", "cap", "size")

    def __init__(self, cap: int) -> None:
        self.cap = max(0, cap)
        self.size = 0
        self._kept = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        room = self.cap - len(self._kept)
        if room > 0:
            self._kept += chunk[:room]

    @property
    def kept(self) -> bytes:
        return bytes(self._kept)


@dataclass(frozen=True)
class Captured:
    """A body as a record holds it: `value` (JSON value, `{"base64": ...}` or None) and
    whether it is only the start of the body."""

    value: Any
    truncated: bool


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def is_json_type(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or mime.endswith("+json")


def _inflate(body: bytes, wbits: int, cap: int) -> tuple[bytes, bool]:
    inflater = zlib.decompressobj(wbits)
    data = inflater.decompress(body, cap + 1)
    return data[:cap], len(data) > cap or bool(inflater.unconsumed_tail)


def _decode(body: bytes, encoding: str, cap: int) -> tuple[bytes, bool]:
    """The body without its Content-Encoding (gzip/deflate), at most `cap` bytes of it, and
    whether it inflated past the cap; the raw bytes for encodings it does not know or
    cannot decode. A truncated body decodes as far as it goes."""
    encoding = encoding.strip().lower()
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return body, False
    try:
        return _inflate(body, zlib.MAX_WBITS | 32, cap)  # gzip or zlib header
    except zlib.error:
        if encoding != "deflate":
            return body, False
    try:  # "deflate" is sometimes sent raw, without the zlib header
        return _inflate(body, -zlib.MAX_WBITS, cap)
    except zlib.error:
        return body, False


def capture_body(
    body: bytes, content_type: str, content_encoding: str, cap: int, *, size: int | None = None
) -> Captured:
    """How a body is recorded from its first bytes `body` (only `cap` of them are used) and
    its whole `size` (default: `body` is all of it): the JSON value of a whole JSON body
    that parses, else `{"base64": ...}` of at most `cap` (decoded) bytes; None when empty."""
    kept = body[:cap]
    truncated = (len(body) if size is None else size) > len(kept)
    if not kept:
        return Captured(None, truncated)
    data, inflated_over = _decode(kept, content_encoding, cap)
    truncated = truncated or inflated_over
    if not truncated and is_json_type(content_type):
        try:
            return Captured(json.loads(data, parse_constant=_reject_constant), False)
        except (ValueError, UnicodeDecodeError, RecursionError):
            pass
    return Captured({"base64": base64.b64encode(data).decode("ascii")}, truncated)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
