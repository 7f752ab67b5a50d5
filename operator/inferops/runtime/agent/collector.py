"""The collector: takes the proxy's sampled records and writes them to object storage as
`<output>/<service>/<version>/<pod>-<UTC timestamp>-<seq>.jsonl`.

Uploads run in a thread because the storage layer is synchronous boto3 and the proxy must
never wait for object storage; a failed upload is logged and its lines are kept (in the
bounded `LineBuffer`) for the next attempt.

A write starts every `flush_seconds`, as soon as `flush_lines` lines wait, or as soon as
the waiting lines reach half of the buffer's byte bound: the other half takes the lines
that arrive while the upload runs, so lines are dropped only when storage falls behind
(fails, or is slower than the traffic), never because the flusher was asleep. Uploads that
fail `UPLOADS_FAILING_AFTER` times in a row (each retry a flush period later) make
`uploads_failing` true until one succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from inferops.contract.agent import (
    DEFAULT_FLUSH_LINES,
    DEFAULT_FLUSH_SECONDS,
    DEFAULT_MAX_BUFFER_BYTES,
    DEFAULT_MAX_BUFFER_LINES,
    UPLOADS_FAILING_AFTER,
    AgentOptions,
)
from inferops.runtime.agent.buffer import LineBuffer
from inferops.storage import Location, Storage, StorageError, parse_location

log = logging.getLogger(__name__)

CONTENT_TYPE_JSONL = "application/x-ndjson"
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(text: str) -> str:
    """A single object-name segment: no slashes, no `.`/`..`, never empty."""
    cleaned = _NAME_UNSAFE.sub("_", text.strip())
    return "unknown" if cleaned in ("", ".", "..") else cleaned


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class CollectorStats:
    written_lines: int = 0
    written_files: int = 0
    failed_uploads: int = 0
    consecutive_failed_uploads: int = 0  # since the last upload that succeeded
    last_error: str = ""
    files: list[str] = field(default_factory=list)


class Collector:
    """Buffers sampled lines and writes them to `<output>/<service>/<version>/` in a thread.

    `record` is called by the proxy; `run` is the periodic flusher (every `flush_seconds`,
    or at once when `flush_lines` lines or `flush_bytes` bytes wait); `flush` makes one
    upload attempt; `close` stops the flusher and makes a final attempt.
    """

    MAX_FILES_REMEMBERED = 100

    def __init__(
        self,
        storage: Storage,
        output: Location,
        service: str,
        version: str,
        pod: str,
        *,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        flush_lines: int = DEFAULT_FLUSH_LINES,
        max_buffer_lines: int = DEFAULT_MAX_BUFFER_LINES,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.storage = storage
        self.output = output
        self.service = safe_name(service)
        self.version = safe_name(version)
        self.pod = safe_name(pod)
        self.flush_seconds = flush_seconds
        self.flush_lines = max(1, flush_lines)
        self.buffer = LineBuffer(max_buffer_lines, max_buffer_bytes)
        # Half the byte bound: the other half holds what arrives while the upload runs.
        self.flush_bytes = max(1, max_buffer_bytes // 2)
        self.stats = CollectorStats()
        self._clock = clock
        self._seq = 0
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._logged_dropped = 0

    @property
    def dropped(self) -> int:
        return self.buffer.dropped

    @property
    def uploads_failing(self) -> bool:
        """Uploads have failed UPLOADS_FAILING_AFTER times in a row (none succeeded since)."""
        return self.stats.consecutive_failed_uploads >= UPLOADS_FAILING_AFTER

    def record(self, entry: Mapping[str, Any]) -> None:
        """Adds one JSON line (entry must be JSON-serialisable; NaN is not)."""
        line = json.dumps(entry, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        if self.buffer.add(line.encode("utf-8") + b"\n") and self._logged_dropped == 0:
            self._log_dropped()
        if len(self.buffer) >= self.flush_lines or self.buffer.nbytes >= self.flush_bytes:
            self._wake.set()

    def next_location(self) -> Location:
        """`<output>/<service>/<version>/<pod>-<UTC timestamp>-<seq>.jsonl`."""
        stamp = self._clock().astimezone(UTC)
        text = stamp.strftime("%Y%m%dT%H%M%S") + f"{stamp.microsecond // 1000:03d}Z"
        name = f"{self.service}/{self.version}/{self.pod}-{text}-{self._seq:06d}.jsonl"
        self._seq += 1
        return self.output.child(name)

    def _upload(self, location: Location, lines: Iterable[bytes]) -> None:
        self.storage.write(location, b"".join(lines), CONTENT_TYPE_JSONL)

    def _log_dropped(self) -> None:
        if self.buffer.dropped != self._logged_dropped:
            log.warning(
                "data collection buffer full (%d lines, %d bytes max): dropped=%d lines so far",
                self.buffer.max_lines,
                self.buffer.max_bytes,
                self.buffer.dropped,
            )
            self._logged_dropped = self.buffer.dropped

    async def flush(self) -> bool:
        """One upload of every waiting line; True when nothing is left unwritten.

        A failure is logged and the lines stay buffered (still bounded) for the next try.
        """
        async with self._lock:
            self._log_dropped()
            batch = self.buffer.take()
            if not batch.lines:
                return True
            location = self.next_location()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="inferops-agent")
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._executor, self._upload, location, batch.lines)
            except Exception as exc:  # StorageError, or anything boto3 lets through
                self.stats.failed_uploads += 1
                self.stats.consecutive_failed_uploads += 1
                self.stats.last_error = str(exc)
                log.error(
                    "data collection upload to %s failed, keeping %d lines: %s",
                    location.text,
                    len(self.buffer),
                    exc,
                )
                return False
            self.buffer.commit(batch)
            self.stats.consecutive_failed_uploads = 0
            self.stats.written_lines += len(batch.lines)
            self.stats.written_files += 1
            self.stats.files = [*self.stats.files, location.text][-self.MAX_FILES_REMEMBERED :]
            log.info("data collection: wrote %d lines to %s", len(batch.lines), location.text)
            return True

    async def run(self) -> None:
        """Flushes every `flush_seconds`, or sooner when `flush_lines` lines or `flush_bytes`
        bytes wait; after a failure it waits `flush_seconds` before trying again. Returns
        once `close` asks."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            if len(self.buffer) and not await self.flush():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.flush_seconds)

    def start(self) -> None:
        """Starts the periodic flusher on the running loop."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def close(self) -> None:
        """Stops the flusher (letting an upload under way finish, so no line is written
        twice), then writes what is left (one attempt)."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if not await self.flush():
            log.error("data collection: %d lines lost at shutdown", len(self.buffer))
        self._log_dropped()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "buffered": len(self.buffer),
            "bufferedBytes": self.buffer.nbytes,
            "dropped": self.buffer.dropped,
            "writtenLines": self.stats.written_lines,
            "writtenFiles": self.stats.written_files,
            "failedUploads": self.stats.failed_uploads,
            "consecutiveFailedUploads": self.stats.consecutive_failed_uploads,
            "uploadsFailing": self.uploads_failing,
            "lastError": self.stats.last_error,
        }


def build_collector(options: AgentOptions) -> Collector:
    """The collector writing to options.output (StorageError for a bad location)."""
    output = parse_location(options.output)
    if output.scheme == "https":
        raise StorageError(f"{options.output}: cannot write to an https:// location")
    return Collector(
        Storage(options.endpoint, options.region, timeout=10.0),
        output,
        options.service,
        options.version,
        options.pod,
        flush_seconds=options.flush_seconds,
        flush_lines=options.flush_lines,
        max_buffer_lines=options.max_buffer_lines,
        max_buffer_bytes=options.max_buffer_bytes,
    )
