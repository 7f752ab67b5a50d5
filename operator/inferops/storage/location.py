"""Locations as users write them: obs:// and s3:// objects, https:// URLs and local files.

A Location is plain data, parsed once; the stores in this package do the I/O.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from inferops.storage.errors import StorageError

Scheme = Literal["s3", "https", "file"]


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

    @property
    def prefix(self) -> str:
        """The key prefix of the objects inside this folder (s3 only): the key and a "/"."""
        return self.key if not self.key or self.key.endswith("/") else self.key + "/"

    def child_text(self, name: str) -> str:
        """The text `child(name)` has, for names it refuses too (to report them)."""
        if self.scheme == "s3":
            return f"{self.text.split('://', 1)[0]}://{self.bucket}/{self.prefix}{name}"
        path = os.path.join(self.path, name)
        return f"file://{path}" if self.text.startswith("file://") else path

    def child(self, name: str) -> Location:
        """The location `name` inside this folder."""
        # Plain string splitting (same answer as PurePosixPath(name).parts): pathlib interns
        # every path component, churning the interpreter's string table per file.
        if ".." in name.split("/") or name.startswith("/"):
            raise StorageError(f"refusing a relative name that leaves its folder: {name!r}")
        if self.scheme == "s3":
            prefix = self.prefix
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
