"""Where data lives: obs:// and s3:// (an S3 API endpoint), https:// and local files.

Used by the batch worker, `fetch-model` and the data-collection agent; it never imports
the operator. Listings are iterators (paged by the S3 API), so memory does not grow with
the number of objects.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

Scheme = Literal["s3", "https", "file"]
DEFAULT_REGION = "us-east-1"
ENDPOINT_ENV = ("INFEROPS_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


class StorageError(Exception):
    """A location that cannot be parsed, read or written; the message says which and why."""


class TooLargeError(StorageError):
    """A file over a size limit; `size` is its size when the storage said it (else None)."""

    def __init__(self, message: str, size: int | None) -> None:
        super().__init__(message)
        self.size = size


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


@dataclass(frozen=True)
class Location:
    """One file or folder. `text` is the location as the user wrote it (kept in manifests)."""

    scheme: Scheme
    text: str
    bucket: str = ""
    key: str = ""
    path: str = ""

    @property
    def name(self) -> str:
        """The last path segment (the source file name in result names)."""
        if self.scheme == "s3":
            return PurePosixPath(self.key).name
        if self.scheme == "https":
            return PurePosixPath(urllib.parse.urlsplit(self.text).path).name
        return Path(self.path).name

    @property
    def is_folder(self) -> bool:
        """Written as a folder (trailing slash); a folder may also be written without one."""
        return self.text.endswith("/")

    def child(self, name: str) -> Location:
        """The location `name` inside this folder."""
        # Plain string splitting (same answer as PurePosixPath(name).parts): pathlib interns
        # every path component, churning the interpreter's string table per file.
        if ".." in name.split("/") or name.startswith("/"):
            raise StorageError(f"refusing a relative name that leaves its folder: {name!r}")
        if self.scheme == "s3":
            prefix = self.key if not self.key or self.key.endswith("/") else self.key + "/"
            scheme_text = self.text.split("://", 1)[0]
            return Location(
                "s3",
                f"{scheme_text}://{self.bucket}/{prefix}{name}",
                bucket=self.bucket,
                key=prefix + name,
            )
        if self.scheme == "file":
            path = os.path.join(self.path, name)
            text = f"file://{path}" if self.text.startswith("file://") else path
            return Location("file", text, path=path)
        raise StorageError(f"{self.text}: cannot write under an https:// location")


def parse_location(text: str) -> Location:
    """obs://bucket/key, s3://bucket/key, https://..., file:///path or a plain local path."""
    if not isinstance(text, str) or not text or any(c in text for c in "\n\r\0"):
        raise StorageError(f"not a location: {text!r}")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return Location("file", text, path=text)
    scheme = scheme.lower()
    if scheme in ("obs", "s3"):
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise StorageError(f"{text}: no bucket name")
        if ".." in PurePosixPath(key).parts:
            raise StorageError(f"{text}: '..' is not allowed in object keys")
        return Location("s3", text, bucket=bucket, key=key)
    if scheme == "file":
        parsed = urllib.parse.urlsplit(text)
        path = urllib.parse.unquote(parsed.path)
        if not path:
            raise StorageError(f"{text}: no path")
        return Location("file", text, path=path)
    if scheme == "https":
        return Location("https", text)
    raise StorageError(f"{text}: unsupported scheme {scheme!r} (obs, s3, https, file)")


def _endpoint(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    return next((os.environ[name] for name in ENDPOINT_ENV if os.environ.get(name)), None)


def _read_size(size: int, max_bytes: int) -> int:
    """Bytes to ask a read for: reads allocate what they are asked for up front, so ask for
    the stated size (+1 to notice a file that grew), the limit only when no size is known."""
    return (size if 0 <= size <= max_bytes else max_bytes) + 1


class Storage:
    """Reads and writes locations; the S3 client is made on first use (thread-safe)."""

    def __init__(
        self,
        endpoint: str | None = None,
        region: str | None = None,
        timeout: float = 60.0,
        connections: int = 10,
    ) -> None:
        self.endpoint = _endpoint(endpoint)
        self.region = region or os.environ.get("AWS_REGION") or DEFAULT_REGION
        self.timeout = timeout
        self.connections = connections  # S3 connection pool: one per thread that calls it
        self._client: Any = None

    @property
    def s3(self) -> Any:
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

    def _s3_error(self, location: Location, exc: Exception) -> StorageError:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        reason = {
            "NoSuchKey": "object not found",
            "404": "object not found",
            "NoSuchBucket": "bucket not found",
            "AccessDenied": "access denied",
            "403": "access denied",
        }.get(str(code), str(exc))
        return StorageError(f"{location.text}: {reason}")

    def list_files(self, folder: Location) -> Iterator[Location]:
        """Every file under a folder, recursively, in key order."""
        if folder.scheme == "s3":
            prefix = folder.key if not folder.key or folder.key.endswith("/") else folder.key + "/"
            paginator = self.s3.get_paginator("list_objects_v2")
            try:
                for page in paginator.paginate(Bucket=folder.bucket, Prefix=prefix):
                    for item in page.get("Contents", ()):
                        if not item["Key"].endswith("/"):
                            yield folder.child(item["Key"][len(prefix) :])
            except Exception as exc:  # botocore raises many types; all mean "cannot list"
                raise self._s3_error(folder, exc) from None
        elif folder.scheme == "file":
            root = Path(folder.path)
            if not root.is_dir():
                raise StorageError(f"{folder.text}: not a folder")
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for filename in sorted(filenames):
                    relative = os.path.relpath(os.path.join(dirpath, filename), root)
                    yield folder.child(relative)
        else:
            raise StorageError(f"{folder.text}: an https:// location cannot be listed")

    def size(self, location: Location) -> int:
        if location.scheme == "s3":
            try:
                head = self.s3.head_object(Bucket=location.bucket, Key=location.key)
            except Exception as exc:
                raise self._s3_error(location, exc) from None
            return int(head["ContentLength"])
        if location.scheme == "file":
            try:
                return os.stat(location.path).st_size
            except OSError as exc:
                raise StorageError(f"{location.text}: {exc.strerror}") from None
        raise StorageError(f"{location.text}: size of an https:// location is not known")

    def read(self, location: Location, max_bytes: int | None = None) -> bytes:
        """The whole content; StorageError when it is larger than max_bytes."""
        limit = None if max_bytes is None else max_bytes + 1
        if location.scheme == "s3":
            try:
                body = self.s3.get_object(Bucket=location.bucket, Key=location.key)["Body"]
                data = body.read(limit) if limit else body.read()
                body.close()
            except Exception as exc:
                raise self._s3_error(location, exc) from None
        elif location.scheme == "file":
            try:
                with open(location.path, "rb") as handle:
                    data = handle.read(limit) if limit else handle.read()
            except OSError as exc:
                raise StorageError(f"{location.text}: {exc.strerror}") from None
        else:
            data = self._read_https(location, limit)
        if max_bytes is not None and len(data) > max_bytes:
            raise StorageError(f"{location.text}: larger than {max_bytes} bytes")
        return bytes(data)

    def read_within(self, location: Location, max_bytes: int) -> bytes:
        """The whole content, or TooLargeError for a file over max_bytes.

        The size is checked before the body is read wherever the storage states it (the
        S3 GET's Content-Length, a local stat, an HTTP Content-Length), so an oversize
        file is never downloaded; otherwise at most max_bytes + 1 bytes are read.
        """
        if location.scheme == "s3":
            try:
                response = self.s3.get_object(Bucket=location.bucket, Key=location.key)
                body = response["Body"]
                try:
                    size = int(response.get("ContentLength", -1))
                    data = b"" if size > max_bytes else body.read(_read_size(size, max_bytes))
                finally:
                    body.close()
            except Exception as exc:
                raise self._s3_error(location, exc) from None
        elif location.scheme == "file":
            try:
                with open(location.path, "rb") as handle:
                    size = os.fstat(handle.fileno()).st_size
                    data = b"" if size > max_bytes else handle.read(_read_size(size, max_bytes))
            except OSError as exc:
                raise StorageError(f"{location.text}: {exc.strerror}") from None
        else:
            request = urllib.request.Request(location.text, headers={"User-Agent": "inferops"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    length = response.headers.get("Content-Length")
                    size = int(length) if length and length.isdigit() else -1
                    data = b"" if size > max_bytes else response.read(_read_size(size, max_bytes))
            except Exception as exc:  # URLError, HTTPError, timeouts: all mean "download failed"
                reason = getattr(exc, "reason", None) or exc
                raise StorageError(f"download failed: {reason}") from None
        if size > max_bytes or len(data) > max_bytes:
            known = size if size > max_bytes else None
            raise TooLargeError(f"{location.text}: larger than {max_bytes} bytes", known)
        return bytes(data)

    def read_if_exists(self, location: Location) -> bytes | None:
        """The whole content, or None when there is no such file (other errors raise)."""
        if location.scheme == "s3":
            try:
                body = self.s3.get_object(Bucket=location.bucket, Key=location.key)["Body"]
                try:
                    return bytes(body.read())
                finally:
                    body.close()
            except Exception as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
                if str(code) in ("NoSuchKey", "404"):
                    return None
                raise self._s3_error(location, exc) from None
        if location.scheme == "file":
            try:
                with open(location.path, "rb") as handle:
                    return handle.read()
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise StorageError(f"{location.text}: {exc.strerror}") from None
        return self.read(location)

    def iter_chunks(self, location: Location, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        """The content as a stream of chunks (a manifest may be larger than memory)."""
        try:
            if location.scheme == "s3":
                body = self.s3.get_object(Bucket=location.bucket, Key=location.key)["Body"]
                try:
                    yield from iter(lambda: bytes(body.read(chunk_size)), b"")
                finally:
                    body.close()
            elif location.scheme == "file":
                with open(location.path, "rb") as handle:
                    yield from iter(lambda: handle.read(chunk_size), b"")
            else:
                request = urllib.request.Request(location.text, headers={"User-Agent": "inferops"})
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    yield from iter(lambda: bytes(response.read(chunk_size)), b"")
        except OSError as exc:
            raise StorageError(f"{location.text}: {exc.strerror or exc}") from None
        except StorageError:
            raise
        except Exception as exc:  # botocore and urllib raise many types; all mean "cannot read"
            if location.scheme == "s3":
                raise self._s3_error(location, exc) from None
            raise StorageError(f"{location.text}: download failed: {exc}") from None

    def _read_https(self, location: Location, limit: int | None) -> bytes:
        request = urllib.request.Request(location.text, headers={"User-Agent": "inferops"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return bytes(response.read(limit) if limit else response.read())
        except Exception as exc:  # URLError, HTTPError, timeouts: all mean "download failed"
            reason = getattr(exc, "reason", None) or exc
            raise StorageError(f"download failed: {reason}") from None

    def write(self, location: Location, data: bytes, content_type: str = "") -> None:
        if location.scheme == "s3":
            extra = {"ContentType": content_type} if content_type else {}
            try:
                self.s3.put_object(Bucket=location.bucket, Key=location.key, Body=data, **extra)
            except Exception as exc:
                raise self._s3_error(location, exc) from None
        elif location.scheme == "file":
            # os.path rather than pathlib: pathlib interns every path component into the
            # interpreter's string table, which a batch worker writing one result file per
            # input would churn (see Location.child).
            directory, name = os.path.split(location.path.rstrip("/") or location.path)
            tmp = os.path.join(directory, f".{name}.tmp")
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
                os.replace(tmp, os.path.join(directory, name))  # readers never see half a file
            except OSError as exc:
                raise StorageError(f"{location.text}: {exc.strerror}") from None
        else:
            raise StorageError(f"{location.text}: cannot write to an https:// location")

    def exists(self, location: Location) -> bool:
        try:
            self.size(location)
        except StorageError:
            return False
        return True

    def download_tree(self, source: Location, dest: Path) -> list[Path]:
        """Copies a file, or every file under a folder, into dest; returns what was written."""
        dest.mkdir(parents=True, exist_ok=True)
        if (source.scheme == "file" and Path(source.path).is_dir()) or (
            source.scheme == "s3" and (not source.key or source.key.endswith("/"))
        ):
            files = [
                (f, PurePosixPath(f.text[len(source.text.rstrip("/")) + 1 :]))
                for f in self.list_files(source)
            ]
        elif source.scheme == "s3" and not self.exists(source):
            # s3://bucket/models/iris (no slash) may name a folder.
            folder = parse_location(source.text + "/")
            files = [
                (f, PurePosixPath(f.text[len(folder.text) :])) for f in self.list_files(folder)
            ]
            if not files:
                raise StorageError(f"{source.text}: object not found")
        else:
            files = [(source, PurePosixPath(source.name or "model"))]
        written = []
        for location, relative in files:
            target = dest.joinpath(*relative.parts)
            self.download(location, target)
            written.append(target)
        return written

    def download(self, location: Location, target: Path) -> None:
        """Streams one file to a local path (model files may be far larger than memory)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if location.scheme == "s3":
                self.s3.download_file(location.bucket, location.key, str(target))
            elif location.scheme == "file":
                shutil.copyfile(location.path, target)
            else:
                request = urllib.request.Request(location.text, headers={"User-Agent": "inferops"})
                with (
                    urllib.request.urlopen(request, timeout=self.timeout) as response,
                    open(target, "wb") as out,
                ):
                    shutil.copyfileobj(response, out, 1024 * 1024)
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"{location.text}: {exc.strerror or exc}") from None
        except Exception as exc:
            if location.scheme == "s3":
                raise self._s3_error(location, exc) from None
            raise StorageError(f"{location.text}: download failed: {exc}") from None
