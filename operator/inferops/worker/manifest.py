"""Output names and manifests: result files, manifest lines, chunks, and resume.

Worker i of n writes its k-th chunk (k = 0, 1, ...) as chunk number m = k*n + i:
`infer-result-{taskId}.manifest` for m == 0, `infer-result-{taskId}_{m}.manifest` after, so
workers never write the same object. A worker commits lines in shard order and rewrites its
current chunk whole (one atomic PUT), so its chunks always hold a prefix of its shard: on a
restart, counting their lines says exactly which sources to skip.

That count is only right for the shards of the same number of workers, so the first run
records it beside the manifests (`infer-result-{taskId}.workers`) and a run with another
count refuses to start (`WorkerCountError`) rather than report sources twice or never.
Redistributing the sources of n old shards over m new ones would need every worker to
read every other's chunks and renumber its own, and the operator sums the progress of the
current workers; starting the task again under a new task ID does not need any of that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from inferops.contract.untrusted import UntrustedInputError, load_json
from inferops.contract.worker_report import manifest_name
from inferops.storage import Location, Storage, StorageError

RESULT_SUFFIX = "_result.txt"
SUCCESSFUL = "SUCCESSFUL"
FAILED = "FAILED"


def result_folder(task_id: str) -> str:
    return f"infer-result-{task_id}"


def result_location(output: Location, task_id: str, name: str) -> Location:
    """<outputPath>/infer-result-{taskId}/<name>_result.txt, in the output's scheme style."""
    return output.child(f"{result_folder(task_id)}/{name}{RESULT_SUFFIX}")


NAME_MAX = 255  # bytes in one local file name (Linux file systems)
PATH_MAX = 4095  # bytes in a local path
KEY_MAX = 1024  # bytes in an S3 object key


def result_name_problem(output: Location, task_id: str, name: str) -> str | None:
    """Why a source's result could not be written under its name, or None: checked before
    the model is called, so that no answer is lost to a name the storage refuses."""
    target = result_location(output, task_id, name)
    if target.scheme == "s3":
        size = len(target.key.encode("utf-8", "surrogateescape"))
        if size > KEY_MAX:
            return f"the result's object key would be {size} bytes, over the {KEY_MAX}-byte limit"
        return None
    path = target.path.encode("utf-8", "surrogateescape")
    longest = max(len(part) for part in path.split(b"/"))
    if longest > NAME_MAX:
        return f"the result's file name would be {longest} bytes, over the {NAME_MAX}-byte limit"
    if len(path) > PATH_MAX:
        return f"the result's path would be {len(path)} bytes, over the {PATH_MAX}-byte limit"
    return None


class WorkerCountError(Exception):
    """The task's output was written by another number of workers."""


def workers_location(output: Location, task_id: str) -> Location:
    return output.child(f"{result_folder(task_id)}.workers")


def check_worker_count(storage: Storage, output: Location, task_id: str, count: int) -> None:
    """Records the task's number of workers beside its manifests on its first run; later
    runs must have the same (blocking I/O; StorageError, WorkerCountError)."""
    marker = workers_location(output, task_id)
    data = storage.read_if_exists(marker)
    if data is None:
        try:
            storage.write(marker, json.dumps({"workers": count}).encode(), "application/json")
            return
        except StorageError:  # another worker of this run wrote it just now (local files)
            data = storage.read_if_exists(marker)
            if data is None:
                raise
    try:
        recorded = load_json(data)
    except UntrustedInputError:
        recorded = None
    workers = recorded.get("workers") if isinstance(recorded, dict) else None
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise WorkerCountError(f"{marker.text}: not a record of this task's workers")
    if workers != count:
        raise WorkerCountError(
            f"task {task_id} was started with {workers} workers and cannot resume with "
            f"{count}: its manifests hold shards of {workers} (resuming would report sources "
            f"twice or never); resume it with {workers} workers (computeNodes), or run it "
            "again as a new task (a new BatchService, or another --task-id)"
        )


def chunk_number(k: int, index: int, count: int) -> int:
    return k * count + index


def chunk_name(task_id: str, number: int) -> str:
    return manifest_name(result_folder(task_id), number)


def manifest_line(source: str, ok: bool, detail: str) -> str:
    """One output line; keys in the seed's order. detail: the result location or the error."""
    entry = {"source": source, "result": SUCCESSFUL if ok else FAILED}
    entry["inference-loc" if ok else "error_message"] = detail
    return json.dumps(entry)


@dataclass
class Counts:
    total: int = 0
    succeeded: int = 0
    failed: int = 0

    def add(self, ok: bool) -> None:
        self.total += 1
        if ok:
            self.succeeded += 1
        else:
            self.failed += 1


@dataclass
class ManifestWriter:
    """This worker's output manifest: the current chunk in memory, rewritten when asked.

    Memory: at most max_lines lines (the current chunk), whatever the number of inputs.
    """

    storage: Storage
    output: Location
    task_id: str
    index: int
    count: int
    max_lines: int
    counts: Counts = field(default_factory=Counts)
    manifests: list[str] = field(default_factory=list)
    _k: int = 0
    _lines: list[str] = field(default_factory=list)
    _dirty: bool = False

    def location(self, k: int) -> Location:
        number = chunk_number(k, self.index, self.count)
        return self.output.child(chunk_name(self.task_id, number))

    def resume(self) -> int:
        """Reads the chunks an earlier run of this worker wrote (blocking I/O); returns how
        many sources of the shard they already report, and continues after them."""
        k = 0
        while (data := self.storage.read_if_exists(self.location(k))) is not None:
            lines = [line for line in data.decode("utf-8", "replace").splitlines() if line]
            for line in lines:
                self.counts.add(_successful(line))
            self.manifests.append(self.location(k).text)
            if len(lines) < self.max_lines:
                self._lines = lines  # the chunk that was being filled: append to it
                break
            k += 1
        self._k = k
        return self.counts.total

    def add(self, source: str, ok: bool, detail: str) -> None:
        self._lines.append(manifest_line(source, ok, detail))
        self.counts.add(ok)
        self._dirty = True

    @property
    def full(self) -> bool:
        return len(self._lines) >= self.max_lines

    @property
    def unwritten(self) -> int:
        """Lines committed but not yet in storage (0 when clean)."""
        return len(self._lines) if self._dirty else 0

    def take_write(self, final: bool = False) -> tuple[Location, bytes] | None:
        """The chunk to write now (or None), moving on to the next chunk when it is full.

        Call from the event loop; do the write (blocking) elsewhere. A final call by worker 0
        with nothing ever written still writes the (empty) main manifest, so that the
        output always has one.
        """
        if not self._dirty and not (final and self.index == 0 and not self.manifests):
            return None
        location = self.location(self._k)
        data = "".join(line + "\n" for line in self._lines).encode()
        if location.text not in self.manifests:
            self.manifests.append(location.text)
        self._dirty = False
        if self.full:
            self._k += 1
            self._lines = []
        return location, data


def _successful(line: str) -> bool:
    try:  # the output folder is the tenant's too: a tampered line must not crash resume
        entry = load_json(line)
    except UntrustedInputError:
        return False
    return isinstance(entry, dict) and entry.get("result") == SUCCESSFUL
