"""One CSV file through the model: a request per row, one JSON line per row, in row order.

Several lanes (loops sending rows) share a file; the rows are read and encoded a chunk at a
time ahead of them, because in a tight loop the encoder runs about twice as fast as when
every row is interleaved with a request (bench/batch_bench.py).

Memory does not follow the number of rows: the CSV text is decoded as it is read (not
held as a str beside its bytes), each answer becomes its JSON line as soon as every row
before it has one, and the lines go to storage in parts of PART_BYTES (`sink`) while the
file is still being sent. What is held is the input itself, the rows in flight (at most
`concurrency` answers ahead of the first unfinished row), one part, and the first few
row errors.
"""

from __future__ import annotations

import asyncio
import bisect
import codecs
import csv
import io
import itertools
import json
from collections import deque
from collections.abc import Awaitable, Callable

from inferops.contract.untrusted import UntrustedInputError, load_json
from inferops.storage import StorageError
from inferops.worker.client import JSON_TYPE, ModelClient, Reply, RequestError
from inferops.worker.encoding import COMPACT, RowEncoder
from inferops.worker.mapping import RowError

ROWS_PER_FILL = 64
ROW_ERRORS_SHOWN = 5
PART_BYTES = 1024 * 1024  # result lines handed to storage at a time
_CHECK_BYTES = 1024 * 1024  # UTF-8 is checked a slice at a time (no whole decoded copy)
Sink = Callable[[bytes], Awaitable[None]]


def json_line(reply: Reply) -> bytes:
    """An answer as one JSON line: JSON on one line as it came, other JSON re-encoded
    compactly, anything else as a JSON string.

    A body the model labels application/json (or +json) on one line is trusted as is:
    parsing every answer only to check it would cost a large part of the worker's time.
    """
    body = reply.body.strip()
    one_line = b"\n" not in body and b"\r" not in body
    if one_line and body and is_json_type(reply.content_type):
        return body
    try:
        # The model's answer is untrusted: nested 1,000 deep it would raise RecursionError
        # and stop the worker; refused, it is kept as text like any other non-JSON answer.
        value = load_json(body, max_bytes=len(body))
    except UntrustedInputError:
        return json.dumps(body.decode("utf-8", "replace")).encode()
    return body if one_line else COMPACT.encode(value).encode()


def is_json_type(header: str) -> bool:
    """Whether a Content-Type header names JSON: application/json or any +json type."""
    if header.startswith(JSON_TYPE) and header[len(JSON_TYPE) : len(JSON_TYPE) + 1] in ("", ";"):
        return True  # the common case, without splitting the header
    media = header.partition(";")[0].strip().lower()
    return media == JSON_TYPE or media.endswith("+json")


def error_line(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def utf8_problem(data: bytes) -> str | None:
    """Why a CSV file is not UTF-8 text (naming the byte, never quoting it), or None."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    for start in range(0, len(data) or 1, _CHECK_BYTES):
        try:
            decoder.decode(
                view[start : start + _CHECK_BYTES], final=start + _CHECK_BYTES >= len(data)
            )
        except UnicodeDecodeError as exc:
            return f"the CSV file is not UTF-8 text (byte {start + exc.start})"
    return None


class CsvRows:
    """The rows of one CSV file (UTF-8, checked with utf8_problem), their results written
    through `sink` in row order as they come, and their failures."""

    def __init__(
        self, data: bytes, encode_row: RowEncoder, sink: Sink, part_bytes: int = PART_BYTES
    ) -> None:
        text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
        self.rows = csv.reader(text)
        self.encode_row = encode_row
        self.sink = sink
        self.part_bytes = part_bytes
        self.count = 0  # rows read (each has a result slot, numbered from 0)
        # Results of the rows after the first unfinished one (`written` rows are out): an
        # answer stays a Reply until it is its row's turn to become a JSON line.
        self.done: dict[int, bytes | Reply] = {}
        self.written = 0
        self.out = bytearray()  # JSON lines not yet handed to the sink
        self.flushing = asyncio.Lock()
        self.failed = 0
        self.errors: list[tuple[int, str]] = []  # the first ROW_ERRORS_SHOWN, by line number
        self.broken = ""  # why the file stopped before its end (malformed, or unwritable)
        # (line number, result slot, body) of rows read and encoded but not yet sent.
        self.ready: deque[tuple[int, int, bytes]] = deque()
        # A lane per row at most (a one-row file needs no second one).
        self.lanes_wanted = data.count(b"\n", 0, len(data) - 1) + 1

    def _fill(self) -> bool:
        """Reads and encodes the next rows; False at the end of the file."""
        rows = self.rows
        read = False
        for row in itertools.islice(rows, ROWS_PER_FILL):
            read = True
            if not row:  # a blank line is not a row
                continue
            slot = self.count
            self.count += 1
            try:
                self.ready.append((rows.line_num, slot, self.encode_row(row)))
            except RowError as exc:
                self._error(rows.line_num, str(exc))
                self._finish(slot, error_line(str(exc)))
        return read

    def _error(self, number: int, message: str) -> None:
        self.failed += 1
        if len(self.errors) < ROW_ERRORS_SHOWN or number < self.errors[-1][0]:
            bisect.insort(self.errors, (number, message))
            del self.errors[ROW_ERRORS_SHOWN:]

    def _finish(self, slot: int, result: bytes | Reply) -> None:
        """Records a row's result; every row whose turn it is becomes its JSON line."""
        if slot != self.written:
            self.done[slot] = result
            return
        out, done = self.out, self.done
        out += (result if isinstance(result, bytes) else json_line(result)) + b"\n"
        self.written += 1
        while self.written in done:
            line = done.pop(self.written)
            out += (line if isinstance(line, bytes) else json_line(line)) + b"\n"
            self.written += 1

    async def _flush(self, least: int) -> None:
        """Hands the lines so far to the sink once there are `least` bytes of them."""
        async with self.flushing:  # parts leave in order, one at a time
            if len(self.out) < least or self.broken:
                return
            part = bytes(self.out)
            self.out.clear()
            try:
                await self.sink(part)
            except StorageError as exc:
                self.broken = f"writing the result failed: {exc}"

    async def send(self, client: ModelClient, lanes: asyncio.Semaphore) -> None:
        """One lane: once it holds one of `lanes`, sends rows until none is left (or the
        file turns out malformed, or its result cannot be written)."""
        async with lanes:
            ready = self.ready
            while not self.broken:
                if not ready:
                    try:
                        if not self._fill():
                            return
                    except csv.Error as exc:
                        self.broken = f"malformed CSV at line {self.rows.line_num}: {exc}"
                        return
                    continue
                number, slot, body = ready.popleft()
                try:
                    self._finish(slot, await client.post_json(body))
                except RequestError as exc:
                    self._error(number, str(exc))
                    self._finish(slot, error_line(str(exc)))
                if len(self.out) >= self.part_bytes:
                    await self._flush(self.part_bytes)

    async def finish(self) -> None:
        """Hands the last lines to the sink (after every lane is done)."""
        await self._flush(0)

    def failure(self) -> str | None:
        """Why the file counts as failed (row numbers and messages), or None."""
        if self.broken:
            return self.broken
        if not self.failed:
            return None
        shown = "; ".join(f"row {n}: {m}" for n, m in self.errors)
        more = "; ..." if self.failed > len(self.errors) else ""
        return f"{self.failed} of {self.count} rows failed: {shown}{more}"
