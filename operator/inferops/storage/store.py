"""What each kind of storage implements, and the small rules its implementations share.

One class per scheme implements `Store`; `Storage` picks it from a location's scheme and
applies the checks that are the same everywhere (size limits, `exists`, folder copies).
Every method raises StorageError with the location in its message, never a library's own
exception, except where a method says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Protocol

from inferops.storage.location import Location

TreeFiles = list[tuple[Location, PurePosixPath]]
"""Files to copy and the path each takes under the destination folder."""


class Writer(Protocol):
    """A file written in parts as it grows; nothing is at its location until commit()."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None:
        """Makes the whole file visible at once (an empty file when nothing was written)."""
        ...

    def abort(self) -> None:
        """Drops what was written; the location keeps what it had."""
        ...


class Store(Protocol):
    """Reads (and, where the scheme allows, writes) the locations of one scheme."""

    def list_files(self, folder: Location) -> Iterator[Location]:
        """Every file under a folder, recursively, in key order."""
        ...

    def size(self, location: Location) -> int: ...

    def read(self, location: Location, limit: int | None) -> bytes:
        """At most `limit` bytes of the content (all of it when limit is None or 0)."""
        ...

    def read_bounded(self, location: Location, max_bytes: int) -> tuple[int, bytes]:
        """The size the storage states (-1 when it does not) and the content: nothing when
        the stated size is over max_bytes, else at most max_bytes + 1 bytes."""
        ...

    def read_if_exists(self, location: Location) -> bytes | None:
        """The whole content, or None when there is no such file (other errors raise)."""
        ...

    def iter_chunks(self, location: Location, chunk_size: int) -> Iterator[bytes]: ...

    def write(self, location: Location, data: bytes, content_type: str) -> None: ...

    def open_writer(self, location: Location, content_type: str) -> Writer:
        """A Writer for a file too large to hold (no I/O until its first write)."""
        ...

    def download(self, location: Location, target: Path) -> None:
        """Streams one file to a local path whose folder exists."""
        ...

    def tree(self, source: Location) -> TreeFiles:
        """The files `Storage.download_tree` copies: every file under a folder, else the
        file itself."""
        ...


def read_size(size: int, max_bytes: int) -> int:
    """Bytes to ask a read for: reads allocate what they are asked for up front, so ask for
    the stated size (+1 to notice a file that grew), the limit only when no size is known."""
    return (size if 0 <= size <= max_bytes else max_bytes) + 1


def files_under(folder: Location, files: Iterable[Location]) -> TreeFiles:
    """Each file with its path relative to the folder (the folder's text is their prefix)."""
    start = len(folder.text.rstrip("/")) + 1
    return [(f, PurePosixPath(f.text[start:])) for f in files]


def single_file(source: Location) -> TreeFiles:
    """A file copied on its own keeps its name ("model" when the location has none)."""
    return [(source, PurePosixPath(source.name or "model"))]
