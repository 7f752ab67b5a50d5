"""The errors of the storage layer: callers catch StorageError alone and show its message."""

from __future__ import annotations


class StorageError(Exception):
    """A location that cannot be parsed, read or written; the message says which and why."""


class TooLargeError(StorageError):
    """A file over a size limit; `size` is its size when the storage said it (else None)."""

    def __init__(self, message: str, size: int | None) -> None:
        super().__init__(message)
        self.size = size
