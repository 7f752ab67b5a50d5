"""https:// URLs (pre-signed object URLs, model hosts): read-only, and never listed.

Also reads http:// URLs, which the batch worker accepts in manifests when its config allows
(they are parsed as scheme "https"; see worker.sources.parse_source).
"""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inferops.storage.errors import StorageError
from inferops.storage.location import Location
from inferops.storage.store import TreeFiles, read_size, single_file


def _download_failed(exc: Exception) -> StorageError:
    # URLError, HTTPError, timeouts: all mean "download failed".
    reason = getattr(exc, "reason", None) or exc
    return StorageError(f"download failed: {reason}")


def _request(location: Location) -> urllib.request.Request:
    return urllib.request.Request(location.text, headers={"User-Agent": "inferops"})


class HttpsStore:
    """Reads URLs with urllib; every request times out after `timeout` seconds."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def _open(self, request: urllib.request.Request) -> Any:
        return urllib.request.urlopen(request, timeout=self.timeout)

    def list_files(self, folder: Location) -> Iterator[Location]:
        raise StorageError(f"{folder.text}: an https:// location cannot be listed")

    def size(self, location: Location) -> int:
        raise StorageError(f"{location.text}: size of an https:// location is not known")

    def read(self, location: Location, limit: int | None) -> bytes:
        try:
            with self._open(_request(location)) as response:
                return bytes(response.read(limit) if limit else response.read())
        except Exception as exc:
            raise _download_failed(exc) from None

    def read_bounded(self, location: Location, max_bytes: int) -> tuple[int, bytes]:
        request = _request(location)  # a malformed URL raises ValueError, as it always did
        try:
            with self._open(request) as response:
                length = response.headers.get("Content-Length")
                size = int(length) if length and length.isdigit() else -1
                data = b"" if size > max_bytes else response.read(read_size(size, max_bytes))
        except Exception as exc:
            raise _download_failed(exc) from None
        return size, bytes(data)

    def read_if_exists(self, location: Location) -> bytes | None:
        # Unlike object storage, "not found" is not told apart here: it raises as any error.
        return self.read(location, None)

    def iter_chunks(self, location: Location, chunk_size: int) -> Iterator[bytes]:
        try:
            with self._open(_request(location)) as response:
                yield from iter(lambda: bytes(response.read(chunk_size)), b"")
        except OSError as exc:
            raise StorageError(f"{location.text}: {exc.strerror or exc}") from None
        except StorageError:
            raise  # one thrown into this generator by its reader passes through
        except Exception as exc:
            raise StorageError(f"{location.text}: download failed: {exc}") from None

    def write(self, location: Location, data: bytes, content_type: str) -> None:
        raise StorageError(f"{location.text}: cannot write to an https:// location")

    def download(self, location: Location, target: Path) -> None:
        try:
            with self._open(_request(location)) as response, open(target, "wb") as out:
                shutil.copyfileobj(response, out, 1024 * 1024)
        except OSError as exc:
            raise StorageError(f"{location.text}: {exc.strerror or exc}") from None
        except Exception as exc:
            raise StorageError(f"{location.text}: download failed: {exc}") from None

    def tree(self, source: Location) -> TreeFiles:
        return single_file(source)
