"""Object storage through the S3 API: obs:// and s3:// (the scheme names the same thing).

Listings are paged by the S3 API and yielded as they come, so memory does not grow with
the number of objects. boto3 is imported on first use, keeping `inferops` start-up fast.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inferops.storage.errors import StorageError
from inferops.storage.location import Location, parse_location
from inferops.storage.store import TreeFiles, files_under, read_size, single_file

DEFAULT_REGION = "us-east-1"
PART_BYTES = 8 * 1024 * 1024  # a multipart upload's parts (S3: 5 MiB at least but the last)
ENDPOINT_ENV = ("INFEROPS_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")

_REASONS = {
    "NoSuchKey": "object not found",
    "404": "object not found",
    "NoSuchBucket": "bucket not found",
    "AccessDenied": "access denied",
    "403": "access denied",
}


def _endpoint(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    return next((os.environ[name] for name in ENDPOINT_ENV if os.environ.get(name)), None)


def _code(exc: Exception) -> str:
    """The S3 error code of a botocore ClientError ("" for any other exception)."""
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _error(location: Location, exc: Exception) -> StorageError:
    return StorageError(f"{location.text}: {_REASONS.get(_code(exc), str(exc))}")


class ObjectStore:
    """obs:// and s3:// locations; the client is made on first use.

    Threads racing on the first use may each make a client; one is kept and the others are
    dropped, which is harmless (clients are thread-safe and hold no state of ours).
    """

    def __init__(
        self, endpoint: str | None, region: str | None, timeout: float, connections: int
    ) -> None:
        self.endpoint = _endpoint(endpoint)
        self.region = region or os.environ.get("AWS_REGION") or DEFAULT_REGION
        self.timeout = timeout
        self.connections = connections  # connection pool: one per thread that calls it
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                s3={"addressing_style": "path"},
                connect_timeout=self.timeout,
                read_timeout=self.timeout,
                retries={"max_attempts": 3},
                max_pool_connections=self.connections,
            )
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint, region_name=self.region, config=config
            )
        return self._client

    def list_files(self, folder: Location) -> Iterator[Location]:
        for name in self.relative_keys(folder):
            yield folder.child(name)

    def relative_keys(self, folder: Location) -> Iterator[str]:
        """The keys under a folder relative to it, in key order, as stored: a key such as
        `a/../b` is the caller's to refuse (list_files raises on it)."""
        prefix = folder.prefix
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=folder.bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    if not item["Key"].endswith("/"):  # a "folder" marker object
                        yield item["Key"][len(prefix) :]
        except Exception as exc:  # botocore raises many types; all mean "cannot list"
            raise _error(folder, exc) from None

    def size(self, location: Location) -> int:
        try:
            head = self.client.head_object(Bucket=location.bucket, Key=location.key)
        except Exception as exc:
            raise _error(location, exc) from None
        return int(head["ContentLength"])

    def read(self, location: Location, limit: int | None) -> bytes:
        try:
            body = self.client.get_object(Bucket=location.bucket, Key=location.key)["Body"]
            data = body.read(limit) if limit else body.read()
            body.close()
        except Exception as exc:
            raise _error(location, exc) from None
        return bytes(data)

    def read_bounded(self, location: Location, max_bytes: int) -> tuple[int, bytes]:
        try:
            response = self.client.get_object(Bucket=location.bucket, Key=location.key)
            body = response["Body"]
            try:
                size = int(response.get("ContentLength", -1))
                data = b"" if size > max_bytes else body.read(read_size(size, max_bytes))
            finally:
                body.close()
        except Exception as exc:
            raise _error(location, exc) from None
        return size, bytes(data)

    def read_if_exists(self, location: Location) -> bytes | None:
        try:
            body = self.client.get_object(Bucket=location.bucket, Key=location.key)["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise _error(location, exc) from None

    def iter_chunks(self, location: Location, chunk_size: int) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=location.bucket, Key=location.key)["Body"]
            try:
                yield from iter(lambda: bytes(body.read(chunk_size)), b"")
            finally:
                body.close()
        except OSError as exc:
            raise StorageError(f"{location.text}: {exc.strerror or exc}") from None
        except StorageError:
            raise  # one thrown into this generator by its reader passes through
        except Exception as exc:
            raise _error(location, exc) from None

    def write(self, location: Location, data: bytes, content_type: str) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self.client.put_object(Bucket=location.bucket, Key=location.key, Body=data, **extra)
        except Exception as exc:
            raise _error(location, exc) from None

    def open_writer(self, location: Location, content_type: str) -> MultipartWriter:
        return MultipartWriter(self.client, location, content_type)

    def download(self, location: Location, target: Path) -> None:
        try:
            self.client.download_file(location.bucket, location.key, str(target))
        except OSError as exc:
            raise StorageError(f"{location.text}: {exc.strerror or exc}") from None
        except Exception as exc:
            raise _error(location, exc) from None

    def tree(self, source: Location) -> TreeFiles:
        if not source.key or source.key.endswith("/"):
            return files_under(source, self.list_files(source))
        if not self._exists(source):
            # s3://bucket/models/iris (no slash) may name a folder.
            folder = parse_location(source.text + "/")
            files = files_under(folder, self.list_files(folder))
            if not files:
                raise StorageError(f"{source.text}: object not found")
            return files
        return single_file(source)

    def _exists(self, location: Location) -> bool:
        try:
            self.size(location)
        except StorageError:
            return False
        return True


class MultipartWriter:
    """An object written in parts of `part_bytes`: a multipart upload once the first part is
    full, a single PUT for anything smaller (most result files)."""

    def __init__(
        self, client: Any, location: Location, content_type: str, part_bytes: int = PART_BYTES
    ) -> None:
        self.client = client
        self.location = location
        self.part_bytes = part_bytes
        self._target = {"Bucket": location.bucket, "Key": location.key}
        self._extra = {"ContentType": content_type} if content_type else {}
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= self.part_bytes:
            self._send(bytes(self._buffer[: self.part_bytes]))
            del self._buffer[: self.part_bytes]

    def _send(self, body: bytes) -> None:
        try:
            if self._upload_id is None:
                started = self.client.create_multipart_upload(**self._target, **self._extra)
                self._upload_id = str(started["UploadId"])
            number = len(self._parts) + 1
            sent = self.client.upload_part(
                **self._target, UploadId=self._upload_id, PartNumber=number, Body=body
            )
        except Exception as exc:
            raise _error(self.location, exc) from None
        self._parts.append({"ETag": sent["ETag"], "PartNumber": number})

    def commit(self) -> None:
        try:
            if self._upload_id is None:
                self.client.put_object(**self._target, Body=bytes(self._buffer), **self._extra)
                return
            if self._buffer:
                self._send(bytes(self._buffer))
            self.client.complete_multipart_upload(
                **self._target, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
            )
        except StorageError:
            raise
        except Exception as exc:
            raise _error(self.location, exc) from None
        finally:
            self._buffer.clear()

    def abort(self) -> None:
        self._buffer.clear()
        if self._upload_id is not None:
            # Best effort: a bucket lifecycle rule cleans up uploads nobody finished.
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(**self._target, UploadId=self._upload_id)
