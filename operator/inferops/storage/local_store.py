"""Local files: file:///path and plain paths (a mounted volume, or tests)."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from inferops.storage.errors import StorageError
from inferops.storage.location import Location
from inferops.storage.store import TreeFiles, files_under, read_size, single_file


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


_WRITES = itertools.count()


def _temporary(path: str) -> tuple[str, str]:
    """(the temporary file a write goes to, the final path): readers never see half a file.

    Each write has its own temporary: workers of one run writing the same object at once
    (the task's worker record) would otherwise truncate each other's temporary, and one
    of them would rename an empty file into place."""
    directory, name = os.path.split(path.rstrip("/") or path)
    temporary = f".{name}.{os.getpid()}-{next(_WRITES)}.tmp"
    return os.path.join(directory, temporary), os.path.join(directory, name)


class LocalWriter:
    """A local file written in parts into its temporary, renamed into place on commit."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self._tmp, self._final = _temporary(location.path)
        self._file: BinaryIO | None = None

    def _open(self) -> BinaryIO:
        try:
            return open(self._tmp, "wb")
        except FileNotFoundError:
            os.makedirs(os.path.dirname(self._tmp) or ".", exist_ok=True)
            return open(self._tmp, "wb")

    def write(self, data: bytes) -> None:
        try:
            if self._file is None:
                self._file = self._open()
            self._file.write(data)
        except OSError as exc:
            raise StorageError(f"{self.location.text}: {exc.strerror}") from None

    def commit(self) -> None:
        self.write(b"")
        assert self._file is not None
        try:
            self._file.close()
            os.replace(self._tmp, self._final)
        except OSError as exc:
            raise StorageError(f"{self.location.text}: {exc.strerror}") from None

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)


class LocalStore:
    """Reads and writes local files; a write replaces the file whole (never half-written)."""

    def list_files(self, folder: Location) -> Iterator[Location]:
        root = Path(folder.path)
        if not root.is_dir():
            raise StorageError(f"{folder.text}: not a folder")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for filename in sorted(filenames):
                relative = os.path.relpath(os.path.join(dirpath, filename), root)
                yield folder.child(relative)

    def size(self, location: Location) -> int:
        try:
            return os.stat(location.path).st_size
        except OSError as exc:
            raise StorageError(f"{location.text}: {exc.strerror}") from None

    def read(self, location: Location, limit: int | None) -> bytes:
        try:
            with open(location.path, "rb") as handle:
                return handle.read(limit) if limit else handle.read()
        except OSError as exc:
            raise StorageError(f"{location.text}: {exc.strerror}") from None

    def read_bounded(self, location: Location, max_bytes: int) -> tuple[int, bytes]:
        try:
            with open(location.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                data = b"" if size > max_bytes else handle.read(read_size(size, max_bytes))
        except OSError as exc:
            raise StorageError(f"{location.text}: {exc.strerror}") from None
        return size, data

    def read_if_exists(self, location: Location) -> bytes | None:
        try:
            with open(location.path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"{location.text}: {exc.strerror}") from None

    def iter_chunks(self, location: Location, chunk_size: int) -> Iterator[bytes]:
        try:
            with open(location.path, "rb") as handle:
                yield from iter(lambda: handle.read(chunk_size), b"")
        except OSError as exc:
            raise StorageError(f"{location.text}: {exc.strerror or exc}") from None
        except StorageError:
            raise
        except Exception as exc:  # e.g. ValueError for a NUL in a path from a manifest
            raise StorageError(f"{location.text}: download failed: {exc}") from None

    def write(self, location: Location, data: bytes, content_type: str) -> None:
        # os.path rather than pathlib: pathlib interns every path component into the
        # interpreter's string table, which a batch worker writing one result file per
        # input would churn (see Location.child).
        tmp, final = _temporary(location.path)
        directory = os.path.dirname(tmp)
        try:
            try:
                _write_file(tmp, data)
            except FileNotFoundError:
                # The folder is made on the first write into it only: checking it on
                # every write cost a batch worker two system calls per result file.
                if not directory:
                    raise
                os.makedirs(directory, exist_ok=True)
                _write_file(tmp, data)
            os.replace(tmp, final)  # readers never see half a file
        except OSError as exc:
            raise StorageError(f"{location.text}: {exc.strerror}") from None

    def open_writer(self, location: Location, content_type: str) -> LocalWriter:
        return LocalWriter(location)

    def download(self, location: Location, target: Path) -> None:
        try:
            shutil.copyfile(location.path, target)
        except OSError as exc:
            raise StorageError(f"{location.text}: {exc.strerror or exc}") from None
        except Exception as exc:  # e.g. ValueError for a NUL in a path from a manifest
            raise StorageError(f"{location.text}: download failed: {exc}") from None

    def tree(self, source: Location) -> TreeFiles:
        if Path(source.path).is_dir():
            return files_under(source, self.list_files(source))
        return single_file(source)
