"""The batch worker: this worker's shard of the inputs, through the model, into manifests.

Sources are processed concurrently but committed in shard order through a bounded window
(a slow source holds back commits, never memory): the manifest then always holds a prefix
of the shard, which is what makes resume exact. Blocking storage calls run in a thread
pool of two threads per request in flight (`config.io_threads_default`: a source needs a
read and a write, and object storage is milliseconds away); HTTP runs on the event loop
(`client.ModelClient`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from inferops.contract.batch_paths import output_inside_input, output_inside_input_message
from inferops.contract.batch_worker import WorkerConfig, config_from_service
from inferops.storage import (
    EgressPolicy,
    Location,
    Storage,
    StorageError,
    TooLargeError,
    Writer,
    parse_location,
)
from inferops.worker.client import ModelClient, RequestError
from inferops.worker.csv_rows import CsvRows, utf8_problem
from inferops.worker.encoding import compile_encoder
from inferops.worker.manifest import (
    ManifestWriter,
    WorkerCountError,
    check_worker_count,
    result_location,
    result_name_problem,
)
from inferops.worker.sources import Source, iter_shard

log = logging.getLogger(__name__)
T = TypeVar("T")

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
CSV_EXTENSION = ".csv"
LISTING_BATCH = 256
RESULT_TYPE = "text/plain; charset=utf-8"
INLINE_IO_BYTES = 256 * 1024


class WorkerError(Exception):
    """A fatal error (input cannot be listed, output cannot be written): exit 1."""


@dataclass
class Summary:
    """What one worker reported (including what an earlier run of it reported)."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    manifests: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "manifests": list(self.manifests),
        }


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str  # the result location when ok, else the error message


class ByteBudget:
    """Caps the bytes of source content held at once (a CSV file is held while its rows
    are sent; its results are not: they are written as they come).

    A source larger than the whole budget still runs, alone, so nothing waits forever.
    Taking and returning budget that is free costs no await (the common, small case).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _fits(self, size: int) -> bool:
        return self.used == 0 or self.used + size <= self.limit

    async def acquire(self, size: int) -> None:
        if not self._waiters and self._fits(size):
            self.used += size
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((size, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(size)  # granted just as we were cancelled: give it back
            else:
                self._waiters.remove((size, waiter))
            raise

    def release(self, size: int) -> None:
        self.used -= size
        # First come, first served: a large source is not starved by small ones.
        while self._waiters and self._fits(self._waiters[0][0]):
            wanted, waiter = self._waiters.popleft()
            if not waiter.done():
                self.used += wanted
                waiter.set_result(None)


def _size_limit(config: WorkerConfig, name: str) -> tuple[str, int]:
    """(what the file is, its size limit) by file extension."""
    suffix = os.path.splitext(name)[1].lower()
    if config.input_type == "json" or suffix == CSV_EXTENSION:
        return "CSV file", config.max_csv_bytes
    if suffix in IMAGE_EXTENSIONS:
        return "image", config.max_image_bytes
    return "file", config.max_file_bytes


def _small_file(path: str) -> bool:
    try:
        return os.stat(path).st_size <= INLINE_IO_BYTES
    except OSError:
        return True  # read_within reports why, right away


class _Run:
    def __init__(
        self,
        config: WorkerConfig,
        storage: Storage,
        output: Location,
        client: ModelClient,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.config = config
        self.storage = storage
        self.output = output
        self.client = client
        self.pool = pool
        self.loop = asyncio.get_running_loop()
        self.writer = ManifestWriter(
            storage,
            output,
            config.task_id,
            config.worker_index,
            config.worker_count,
            config.manifest_max_lines,
        )
        # Enough sources in flight to keep `concurrency` requests busy when some sources
        # are between requests (downloading, writing results).
        self.window = max(2 * config.concurrency, 8)
        self.budget = ByteBudget(2 * config.max_csv_bytes)
        # Lanes (a loop sending one CSV file's rows) over all files at once: more than
        # `concurrency` would only queue for the connector's connections, at a cost per request.
        self.lanes = asyncio.Semaphore(config.concurrency)
        self.encode_row = compile_encoder(config.mapping or {})
        self.since_flush = 0
        self.last_flush = time.monotonic()

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.loop.run_in_executor(self.pool, fn, *args)

    async def small_io(self, local: bool, fn: Callable[..., T], *args: Any) -> T:
        """Small local file I/O (an input read, a result written) runs inline: it takes
        less time than the hop to a thread and back, and local paths are for local runs.
        Object-store and HTTP calls always go to the pool."""
        return fn(*args) if local else await self.io(fn, *args)

    # ---- the loop ----------------------------------------------------------------------------

    async def _resume(self) -> int:
        """How many sources of the shard an earlier run of this worker reported."""
        config = self.config
        try:
            await self.io(
                check_worker_count,
                self.storage,
                self.output,
                config.task_id,
                config.worker_count,
            )
            skip = await self.io(self.writer.resume)
        except WorkerCountError as exc:
            raise WorkerError(str(exc)) from None
        except StorageError as exc:
            raise WorkerError(f"cannot read this worker's earlier manifests: {exc}") from None
        if skip:
            log.info("worker %d resumes after %d reported sources", config.worker_index, skip)
        return skip

    async def run(self) -> Summary:
        config = self.config
        skip = await self._resume()
        # (source, its outcome to come), in shard order: the reorder window.
        window: deque[tuple[Source, asyncio.Future[Outcome]]] = deque()
        sources = iter_shard(
            self.storage,
            config.input_path,
            config.worker_index,
            config.worker_count,
            config.allow_http_sources,
        )
        try:
            while batch := await self._next_batch(sources):
                for source in batch:
                    if source.shard_index < skip:
                        continue
                    while len(window) >= self.window:
                        await self._commit(*window.popleft())
                    window.append((source, self._start(source)))
                    while window and window[0][1].done():
                        await self._commit(*window.popleft())
            while window:
                await self._commit(*window.popleft())
            await self._flush(final=True)
        except BaseException:
            for _, future in window:
                future.cancel()
            # Keep what was committed, so that a restart skips it instead of redoing it.
            try:
                await self._flush()
            except Exception as exc:
                log.warning("could not save the manifest while stopping: %s", exc)
            raise
        counts = self.writer.counts
        return Summary(counts.total, counts.succeeded, counts.failed, list(self.writer.manifests))

    async def _next_batch(self, sources: Iterator[Source]) -> list[Source]:
        try:
            return await self.io(lambda: list(itertools.islice(sources, LISTING_BATCH)))
        except StorageError as exc:
            raise WorkerError(f"cannot read the input {self.config.input_path}: {exc}") from None

    def _start(self, source: Source) -> asyncio.Future[Outcome]:
        error = source.error
        if error is None:
            location = source.location
            error = "no source" if location is None else self._refusal(source, location)
        if error is not None or source.location is None:
            done: asyncio.Future[Outcome] = self.loop.create_future()
            done.set_result(Outcome(False, error or "no source"))
            return done
        return asyncio.ensure_future(self._guarded(source, source.location))

    def _refusal(self, source: Source, location: Location) -> str | None:
        """Why a source is not read at all (before any I/O), or None."""
        if location.scheme == "file" and not self.config.allow_local_paths:
            return LOCAL_ONLY
        return result_name_problem(self.output, self.config.task_id, source.name)

    async def _commit(self, source: Source, future: asyncio.Future[Outcome]) -> None:
        outcome = await future
        self.writer.add(source.text, outcome.ok, outcome.detail)
        self.since_flush += 1
        if (
            self.writer.full
            or self.since_flush >= self.config.flush_lines
            or time.monotonic() - self.last_flush >= self.config.flush_seconds
        ):
            await self._flush()

    async def _flush(self, final: bool = False) -> None:
        write = self.writer.take_write(final)
        self.since_flush = 0
        self.last_flush = time.monotonic()
        if write is None:
            return
        location, data = write
        try:
            await self.io(self.storage.write, location, data, "application/json")
        except StorageError as exc:
            raise WorkerError(f"cannot write the output manifest: {exc}") from None
        counts = self.writer.counts
        log.info(
            "worker %d/%d: %d reported (%d succeeded, %d failed) in %s",
            self.config.worker_index,
            self.config.worker_count,
            counts.total,
            counts.succeeded,
            counts.failed,
            location.text,
        )

    # ---- one source --------------------------------------------------------------------------

    async def _guarded(self, source: Source, location: Location) -> Outcome:
        try:
            return await self._process(source, location)
        except Exception as exc:  # a bug must fail one source, not the whole run
            log.exception("unexpected error on %s", source.text)
            return Outcome(False, f"internal error: {exc!r}")

    async def _process(self, source: Source, location: Location) -> Outcome:
        kind, limit = _size_limit(self.config, source.filename)
        try:
            local = location.scheme == "file" and _small_file(location.path)
            data = await self.small_io(local, self.storage.read_within, location, limit)
        except TooLargeError as exc:
            size = f" ({exc.size} bytes)" if exc.size is not None else ""
            return Outcome(False, f"{kind} is larger than the {limit}-byte limit{size}")
        except StorageError as exc:
            reason = str(exc).removeprefix("download failed: ")
            return Outcome(False, f"Download file failed: {reason}")
        await self.budget.acquire(len(data))
        try:
            if self.config.input_type == "file":
                return await self._file(source, data)
            return await self._csv(source, data)
        finally:
            self.budget.release(len(data))

    async def _save(self, name: str, data: bytes) -> Location:
        """Writes a result file; StorageError when it cannot."""
        target = result_location(self.output, self.config.task_id, name)
        local = target.scheme == "file" and len(data) <= INLINE_IO_BYTES
        await self.small_io(local, self.storage.write, target, data, RESULT_TYPE)
        return target

    async def _file(self, source: Source, data: bytes) -> Outcome:
        assert self.config.file_field is not None
        try:
            reply = await self.client.post_file(self.config.file_field, source.filename, data)
            target = await self._save(source.name, reply.body)
        except RequestError as exc:
            return Outcome(False, str(exc))
        except StorageError as exc:
            return Outcome(False, f"writing the result failed: {exc}")
        return Outcome(True, target.text)

    async def _csv(self, source: Source, data: bytes) -> Outcome:
        problem = utf8_problem(data)
        if problem is not None:
            return Outcome(False, problem)
        target = result_location(self.output, self.config.task_id, source.name)
        writer = self.storage.open_writer(target, RESULT_TYPE)
        local = target.scheme == "file"

        async def sink(part: bytes) -> None:
            await self.small_io(local, writer.write, part)

        rows = CsvRows(data, self.encode_row, sink)
        try:
            await self._send_rows(rows)
            if not rows.broken:
                await rows.finish()
            if rows.broken:
                await self.small_io(local, writer.abort)
                return Outcome(False, rows.broken)
            await self.small_io(local, writer.commit)
        except StorageError as exc:
            await self.small_io(local, writer.abort)
            return Outcome(False, f"writing the result failed: {exc}")
        except BaseException:
            self._abort_later(writer)
            raise
        failure = rows.failure()
        if failure is None:
            return Outcome(True, target.text)
        return Outcome(False, f"{failure} (results in {target.text})")

    async def _send_rows(self, rows: CsvRows) -> None:
        lanes = min(self.config.concurrency, rows.lanes_wanted)
        if lanes == 1:
            await rows.send(self.client, self.lanes)  # a one-row file: no task to schedule
        else:
            await asyncio.gather(*(rows.send(self.client, self.lanes) for _ in range(lanes)))

    def _abort_later(self, writer: Writer) -> None:
        """Drops a half-written result while the run is being cancelled (no await)."""
        with contextlib.suppress(RuntimeError):  # the pool is shut down already
            self.pool.submit(writer.abort)


LOCAL_ONLY = "local paths are only for local runs (inferops batch run)"


def _output_location(config: WorkerConfig) -> Location:
    """Where results go, once the paths are checked; WorkerError for paths a worker
    must not use."""
    try:
        output = parse_location(config.output_path)
        source = parse_location(config.input_path)
    except StorageError as exc:
        raise WorkerError(str(exc)) from None
    if output.scheme == "https":
        raise WorkerError(f"{config.output_path}: cannot write to an https:// location")
    for name, location in (("input_path", source), ("output_path", output)):
        if location.scheme == "file" and not config.allow_local_paths:
            raise WorkerError(f"{name}: {location.text}: {LOCAL_ONLY}")
    if output.scheme == source.scheme == "file" and output_inside_input(
        os.path.realpath(source.path), os.path.realpath(output.path)
    ):  # the config compared the paths as written; here through links and "..", too
        raise WorkerError(f"output_path: {output_inside_input_message(config.input_path)}")
    return output


async def run_worker(config: WorkerConfig, storage: Storage | None = None) -> Summary:
    """Runs one worker to the end; WorkerError on a fatal error (FAILED lines are not)."""
    output = _output_location(config)
    threads = config.storage_threads
    if storage is None:
        egress = EgressPolicy.allowing(config.allowed_networks)
        storage = Storage(config.s3_endpoint, config.s3_region, connections=threads, egress=egress)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inferops-io")
    try:
        async with ModelClient(config) as client:
            return await _Run(config, storage, output, client, pool).run()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


async def run_local_async(
    batch_obj: Mapping[str, Any],
    app_obj: Mapping[str, Any],
    model_url: str,
    task_id: str,
    workers: int | None = None,
    *,
    limits: Any = None,
    **overrides: Any,
) -> list[Summary]:
    """Runs every worker of a BatchService concurrently in this process (same code path
    as the pods: one config per index, each its own shard)."""
    overrides.setdefault("allow_local_paths", True)  # the one place local paths are allowed
    first = config_from_service(
        batch_obj, app_obj, model_url, task_id, 0, workers, limits, **overrides
    )
    configs = [
        config_from_service(
            batch_obj, app_obj, model_url, task_id, i, first.worker_count, limits, **overrides
        )
        for i in range(first.worker_count)
    ]
    return list(await asyncio.gather(*(run_worker(c) for c in configs)))


def run_local(
    batch_obj: Mapping[str, Any],
    app_obj: Mapping[str, Any],
    model_url: str,
    task_id: str,
    workers: int | None = None,
    *,
    limits: Any = None,
    **overrides: Any,
) -> list[Summary]:
    """`run_local_async` from synchronous code (starts its own event loop)."""
    return asyncio.run(
        run_local_async(batch_obj, app_obj, model_url, task_id, workers, limits=limits, **overrides)
    )
