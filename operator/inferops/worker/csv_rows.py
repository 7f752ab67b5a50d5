"""One CSV file through the model: a request per row, one JSON line per row, in row order.

Several lanes (loops sending rows) share a file; the rows are read and encoded a chunk at a
time ahead of them, because in a tight loop the encoder runs about twice as fast as when
every row is interleaved with a request (bench/batch_bench.py).
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
from collections import deque
from collections.abc import Sequence

from inferops.worker.client import JSON_TYPE, ModelClient, Reply, RequestError
from inferops.worker.encoding import COMPACT, RowEncoder
from inferops.worker.mapping import RowError

ROWS_PER_FILL = 64
ROW_ERRORS_SHOWN = 5


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
        value = json.loads(body)
    except ValueError:
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


class CsvRows:
    """The rows of one CSV text, their results (one line each) and their failures."""

    def __init__(self, text: str, encode_row: RowEncoder) -> None:
        self.rows = csv.reader(io.StringIO(text))
        self.encode_row = encode_row
        # A line per row: the model's Reply until output() writes it as a JSON line (in one
        # tight loop, which costs less than one at a time between requests).
        self.results: list[bytes | Reply] = []
        self.errors: list[tuple[int, str]] = []  # (line number, message)
        self.broken = ""  # why the file could not be read to its end
        # (line number, result slot, body) of rows read and encoded but not yet sent.
        self.ready: deque[tuple[int, int, bytes]] = deque()
        # A lane per row at most (a one-row file needs no second one).
        self.lanes_wanted = text.count("\n", 0, len(text) - 1) + 1

    def _fill(self) -> bool:
        """Reads and encodes the next rows; False at the end of the file."""
        rows, results = self.rows, self.results
        read = False
        for row in itertools.islice(rows, ROWS_PER_FILL):
            read = True
            if not row:  # a blank line is not a row
                continue
            slot = len(results)
            try:
                self.ready.append((rows.line_num, slot, self.encode_row(row)))
                results.append(b"")
            except RowError as exc:
                results.append(error_line(str(exc)))
                self.errors.append((rows.line_num, str(exc)))
        return read

    async def send(self, client: ModelClient, lanes: asyncio.Semaphore) -> None:
        """One lane: once it holds one of `lanes`, sends rows until none is left (or the
        file turns out malformed)."""
        async with lanes:
            ready, results = self.ready, self.results
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
                    results[slot] = await client.post_json(body)
                except RequestError as exc:
                    results[slot] = error_line(str(exc))
                    self.errors.append((number, str(exc)))

    def output(self) -> bytes:
        """The result file: one line per row."""
        return b"".join(
            (line if isinstance(line, bytes) else json_line(line)) + b"\n" for line in self.results
        )

    def failure(self) -> str | None:
        """Why the file counts as failed (row numbers and messages), or None."""
        if self.broken:
            return self.broken
        if not self.errors:
            return None
        errors: Sequence[tuple[int, str]] = sorted(self.errors)
        shown = "; ".join(f"row {n}: {m}" for n, m in errors[:ROW_ERRORS_SHOWN])
        more = "; ..." if len(errors) > ROW_ERRORS_SHOWN else ""
        return f"{len(errors)} of {len(self.results)} rows failed: {shown}{more}"
