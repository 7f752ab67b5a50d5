"""https:// URLs (pre-signed object URLs, model hosts): read-only, and never listed.

Also reads http:// URLs, which the batch worker accepts in manifests when its config allows
(they are parsed as scheme "https"; see worker.sources.parse_source). Every connection goes
through an egress policy (storage.egress, storage.http_client): the batch worker's refuses
private and special addresses; without one, any address is reached.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from inferops.storage.egress import EgressPolicy
from inferops.storage.errors import StorageError
from inferops.storage.http_client import HttpClient
from inferops.storage.location import Location
from inferops.storage.store import TreeFiles, Writer, read_size, single_file


def _download_failed(exc: Exception) -> StorageError:
    # Refusals, HTTP statuses, timeouts, TLS and connection errors: all mean "download
    # failed". None of them quotes the response (see http_client).
    reason = getattr(exc, "strerror", None) or exc
    return StorageError(f"download failed: {reason}")


class HttpsStore:
    """Reads URLs; every socket operation times out after `timeout` seconds."""

    def __init__(self, timeout: float, egress: EgressPolicy | None = None) -> None:
        self.timeout = timeout
        self.client = HttpClient(egress or EgressPolicy.unrestricted(), timeout)

    def list_files(self, folder: Location) -> Iterator[Location]:
        raise StorageError(f"{folder.text}: an https:// location cannot be listed")

    def size(self, location: Location) -> int:
        raise StorageError(f"{location.text}: size of an https:// location is not known")

    def read(self, location: Location, limit: int | None) -> bytes:
        try:
            with self.client.get(location.text) as response:
                return bytes(response.read(limit) if limit else response.read())
        except Exception as exc:
            raise _download_failed(exc) from None

    def read_bounded(self, location: Location, max_bytes: int) -> tuple[int, bytes]:
        try:
            with self.client.get(location.text) as response:
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
            with self.client.get(location.text) as response:
                yield from iter(lambda: bytes(response.read(chunk_size)), b"")
        except OSError as exc:
            raise StorageError(f"{location.text}: {exc.strerror or exc}") from None
        except StorageError:
            raise  # one thrown into this generator by its reader passes through
        except Exception as exc:
            raise StorageError(f"{location.text}: download failed: {exc}") from None

    def write(self, location: Location, data: bytes, content_type: str) -> None:
        raise StorageError(f"{location.text}: cannot write to an https:// location")

    def open_writer(self, location: Location, content_type: str) -> Writer:
        raise StorageError(f"{location.text}: cannot write to an https:// location")

    def download(self, location: Location, target: Path) -> None:
        try:
            with self.client.get(location.text) as response, open(target, "wb") as out:
                shutil.copyfileobj(response, out, 1024 * 1024)
        except OSError as exc:
            raise StorageError(f"{location.text}: {exc.strerror or exc}") from None
        except Exception as exc:
            raise StorageError(f"{location.text}: download failed: {exc}") from None

    def tree(self, source: Location) -> TreeFiles:
        return single_file(source)
