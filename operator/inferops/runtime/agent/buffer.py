"""The bounded in-memory queue of recorded lines between the proxy and object storage.

It lives on the event loop and never blocks: an upload copies a batch out (`take`) and only
removes it once written (`commit`), so a failed upload loses nothing and the memory bound
holds however slow the storage is.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from inferops.contract.agent import DEFAULT_MAX_BUFFER_BYTES


@dataclass(frozen=True)
class Batch:
    """Lines taken for one upload: `start` is the absolute index of the first line."""

    start: int
    lines: tuple[bytes, ...]

    @property
    def end(self) -> int:
        return self.start + len(self.lines)


class LineBuffer:
    """A bounded FIFO of encoded JSON lines waiting to be uploaded.

    At most `max_lines` lines and `max_bytes` bytes are held; adding past either bound drops
    the oldest lines and counts them in `dropped`. Lines stay in the buffer while an upload
    of them is under way (`take` copies, `commit` removes), so a failed upload loses
    nothing and the bound holds whatever the storage does. Not thread-safe: call it from one
    thread (the event loop); only the copied batch goes to the upload thread.
    """

    def __init__(self, max_lines: int, max_bytes: int = DEFAULT_MAX_BUFFER_BYTES) -> None:
        if max_lines < 1 or max_bytes < 1:
            raise ValueError("the buffer needs room for at least one line")
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.dropped = 0
        self._lines: deque[bytes] = deque()
        self._first = 0  # absolute index of self._lines[0]
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._lines)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def add(self, line: bytes) -> int:
        """Appends one line; returns how many old lines were dropped to make room."""
        self._lines.append(line)
        self._bytes += len(line)
        dropped = 0
        while self._lines and (len(self._lines) > self.max_lines or self._bytes > self.max_bytes):
            self._bytes -= len(self._lines.popleft())
            self._first += 1
            dropped += 1
        self.dropped += dropped
        return dropped

    def take(self, limit: int | None = None) -> Batch:
        """The oldest `limit` lines (default: all) for an upload; they stay until `commit`."""
        count = len(self._lines) if limit is None else min(limit, len(self._lines))
        return Batch(self._first, tuple(self._lines[i] for i in range(count)))

    def commit(self, batch: Batch) -> None:
        """Removes an uploaded batch. Lines of it dropped meanwhile were delivered after all,
        so they no longer count as dropped."""
        delivered_early = max(0, min(self._first, batch.end) - batch.start)
        self.dropped -= delivered_early
        for _ in range(max(0, batch.end - self._first)):
            self._bytes -= len(self._lines.popleft())
        self._first = max(self._first, batch.end)

    def lines(self) -> list[bytes]:
        """A copy of the waiting lines, oldest first."""
        return list(self._lines)
