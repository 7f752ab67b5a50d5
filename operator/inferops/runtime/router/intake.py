"""The mirror intake: where nginx hands over the copies meant for shadows.

nginx does not finish a request (nor read the next one on that keep-alive connection)
before its mirror subrequests are answered, so this answer is what every mirrored
request waits for. It is answered from the first bytes that complete the copy, by a
minimal HTTP/1.1 reader instead of a web framework: nginx is the only client (a socket in
the pod's own folder) and always sends a Content-Length (its request buffering is on),
so the reader needs no more, and refuses, with 400 and a closed connection, anything
else: chunked bodies, oversized heads or bodies, malformed lines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from multidict import CIMultiDict

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
REFUSED = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"  # the connection stays


@dataclass(frozen=True)
class Copy:
    """One mirrored request as nginx sent it."""

    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes


class BadCopyError(ValueError):
    pass


def parse_head(head: bytes) -> tuple[str, str, CIMultiDict[str]]:
    """Request line and headers of an HTTP/1.1 request head (without the blank line)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise BadCopyError("undecodable head") from exc
    line, *rows = text.split("\r\n")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[1].startswith("/") or parts[2] != "HTTP/1.1":
        raise BadCopyError("not an HTTP/1.1 request line")
    headers: CIMultiDict[str] = CIMultiDict()
    for row in rows:
        name, colon, value = row.partition(":")
        if not colon or not name or name != name.strip():
            raise BadCopyError("malformed header line")
        headers.add(name, value.strip())
    return parts[0], parts[1], headers


class MirrorIntake(asyncio.Protocol):
    """Reads copies off one nginx connection and hands each to `take`, which says at once
    whether it is one (204) or not (400)."""

    def __init__(self, take: Callable[[Copy], bool], max_body: int) -> None:
        self.take = take
        self.max_body = max_body
        self.buffer = bytearray()
        self.head: tuple[str, str, CIMultiDict[str]] | None = None
        self.length = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            while self._next():
                pass
        except BadCopyError as exc:
            log.warning("mirror intake: %s; closing the connection", exc)
            if self.transport is not None:
                self.transport.write(BAD_REQUEST)
                self.transport.close()
            self.buffer.clear()

    def _next(self) -> bool:
        """Completes at most one copy from the buffer; True when one was completed."""
        if self.head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    raise BadCopyError("head too large")
                return False
            self.head = parse_head(bytes(self.buffer[:end]))
            del self.buffer[: end + 4]
            headers = self.head[2]
            if "transfer-encoding" in headers:
                raise BadCopyError("a chunked copy (nginx buffers bodies: never expected)")
            try:
                self.length = int(headers.get("content-length", "0"))
            except ValueError as exc:
                raise BadCopyError("bad Content-Length") from exc
            if not 0 <= self.length <= self.max_body:
                raise BadCopyError(f"body of {self.length} bytes")
        if len(self.buffer) < self.length:
            return False
        method, path, headers = self.head
        body = bytes(self.buffer[: self.length])
        del self.buffer[: self.length]
        self.head = None
        taken = self.take(Copy(method, path, headers, body))
        if self.transport is not None:
            self.transport.write(NO_CONTENT if taken else REFUSED)
        return True
