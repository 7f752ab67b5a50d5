"""`Storage`: the one object callers use; it hands each call to the store of its scheme.

The checks that are the same for every scheme live here, once: size limits, `exists`,
and copying a folder file by file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inferops.storage.egress import EgressPolicy
from inferops.storage.errors import StorageError, TooLargeError
from inferops.storage.https_store import HttpsStore
from inferops.storage.local_store import LocalStore
from inferops.storage.location import Location
from inferops.storage.object_store import ObjectStore
from inferops.storage.store import Store, Writer


class Storage:
    """Reads and writes locations of every scheme; the S3 client is made on first use.

    `egress` decides which addresses https:// (and http://) locations may reach (see
    storage.egress); None reaches any. The S3 endpoint is configuration, not data, and is
    not checked by it.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        region: str | None = None,
        timeout: float = 60.0,
        connections: int = 10,
        egress: EgressPolicy | None = None,
    ) -> None:
        self._objects = ObjectStore(endpoint, region, timeout, connections)
        self._local = LocalStore()
        self._https = HttpsStore(timeout, egress)

    # Settings as resolved (endpoint and region from the environment when not given).
    @property
    def endpoint(self) -> str | None:
        return self._objects.endpoint

    @property
    def region(self) -> str:
        return self._objects.region

    @property
    def timeout(self) -> float:
        return self._https.timeout

    @property
    def connections(self) -> int:
        """S3 connection pool size: one per thread that calls this storage."""
        return self._objects.connections

    @property
    def s3(self) -> Any:
        """The boto3 S3 client."""
        return self._objects.client

    def store_for(self, location: Location) -> Store:
        if location.scheme == "s3":
            return self._objects
        if location.scheme == "file":
            return self._local
        return self._https

    def list_files(self, folder: Location) -> Iterator[Location]:
        """Every file under a folder, recursively, in key order (errors on first next())."""
        yield from self.store_for(folder).list_files(folder)

    def object_keys(self, folder: Location) -> Iterator[str]:
        """The keys under an s3 folder relative to it, in key order, unchecked (see
        ObjectStore.relative_keys)."""
        if folder.scheme != "s3":
            raise StorageError(f"{folder.text}: not an object storage folder")
        yield from self._objects.relative_keys(folder)

    def size(self, location: Location) -> int:
        return self.store_for(location).size(location)

    def exists(self, location: Location) -> bool:
        try:
            self.size(location)
        except StorageError:
            return False
        return True

    def read(self, location: Location, max_bytes: int | None = None) -> bytes:
        """The whole content; StorageError when it is larger than max_bytes."""
        limit = None if max_bytes is None else max_bytes + 1
        data = self.store_for(location).read(location, limit)
        if max_bytes is not None and len(data) > max_bytes:
            raise StorageError(f"{location.text}: larger than {max_bytes} bytes")
        return bytes(data)

    def read_within(self, location: Location, max_bytes: int) -> bytes:
        """The whole content, or TooLargeError for a file over max_bytes.

        The size is checked before the body is read wherever the storage states it (the
        S3 GET's Content-Length, a local stat, an HTTP Content-Length), so an oversize
        file is never downloaded; otherwise at most max_bytes + 1 bytes are read.
        """
        size, data = self.store_for(location).read_bounded(location, max_bytes)
        if size > max_bytes or len(data) > max_bytes:
            known = size if size > max_bytes else None
            raise TooLargeError(f"{location.text}: larger than {max_bytes} bytes", known)
        return bytes(data)

    def read_if_exists(self, location: Location) -> bytes | None:
        """The whole content, or None when there is no such file (other errors raise)."""
        return self.store_for(location).read_if_exists(location)

    def iter_chunks(self, location: Location, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        """The content as a stream of chunks (a manifest may be larger than memory)."""
        yield from self.store_for(location).iter_chunks(location, chunk_size)

    def write(self, location: Location, data: bytes, content_type: str = "") -> None:
        self.store_for(location).write(location, data, content_type)

    def open_writer(self, location: Location, content_type: str = "") -> Writer:
        """A file written in parts as it grows (results larger than memory should hold);
        nothing is at the location until the writer's commit()."""
        return self.store_for(location).open_writer(location, content_type)

    def download_tree(self, source: Location, dest: Path) -> list[Path]:
        """Copies a file, or every file under a folder, into dest; returns what was written."""
        dest.mkdir(parents=True, exist_ok=True)
        written = []
        for location, relative in self.store_for(source).tree(source):
            target = dest.joinpath(*relative.parts)
            self.download(location, target)
            written.append(target)
        return written

    def download(self, location: Location, target: Path) -> None:
        """Streams one file to a local path (model files may be far larger than memory)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        self.store_for(location).download(location, target)
