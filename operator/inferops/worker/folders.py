"""The sources of a folder input: every file under it, in object-store key order.

Anything under the folder that the worker will not read is still a source, reported FAILED
with the reason, never skipped without a word: a broken symbolic link, a link to a folder
or to a file outside the input folder (which would read whatever the worker can read), a
FIFO, socket or device; an object key whose result could not be named safely (an empty,
"." or ".." path segment: `a//b`, `a/../b`).

Links are checked when the folder is listed. Local folders are only read by local runs
(`inferops batch run`), where the folder is the user's own: a link swapped between the
listing and the read is not defended against.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from inferops.storage import Location, Storage, StorageError

Item = tuple[str, Location | None, str, str | None]
"""(source text, location, result name, why it is FAILED without being read or None)."""

ODD_KEY = (
    "an object key with an empty, '.' or '..' path segment (its result would have no safe name)"
)


def folder_sources(storage: Storage, folder: Location) -> Iterator[Item]:
    """Every file under the folder in key order; its result name is its relative path, so
    a/1.jpg and b/1.jpg do not collide."""
    if folder.scheme == "file":
        if not os.path.isdir(folder.path):
            raise StorageError(f"{folder.text}: not a folder")
        for relative, problem in walk_sorted(folder.path, os.path.realpath(folder.path)):
            location = folder.child(relative)
            yield location.text, location, relative, problem
    elif folder.scheme == "s3":
        for relative in storage.object_keys(folder):
            if odd_key(relative):
                yield folder.child_text(relative), None, "", ODD_KEY
            else:
                location = folder.child(relative)
                yield location.text, location, relative, None
    else:
        raise StorageError(f"{folder.text}: an https:// input must be a .manifest file")


def odd_key(relative: str) -> bool:
    return any(part in ("", ".", "..") for part in relative.split("/"))


def walk_sorted(root: str, real_root: str, relative: str = "") -> Iterator[tuple[str, str | None]]:
    """(relative path, why it is not read or None) of every entry under root that is not a
    folder, in the order an object store lists keys.

    Sorting each directory's entries by name, with "/" after directory names, gives exactly
    the order of the full keys, while holding one directory listing per level only.
    Links to folders are not followed (no loops); links to files inside real_root are read.
    """
    try:
        with os.scandir(os.path.join(root, relative)) as scan:
            entries = sorted(
                (entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name, entry)
                for entry in scan
            )
    except OSError as exc:
        raise StorageError(f"{os.path.join(root, relative)}: {exc.strerror}") from None
    for key, entry in entries:
        if key.endswith("/"):
            yield from walk_sorted(root, real_root, relative + key)
        elif entry.is_file(follow_symlinks=False):  # from the directory entry: no stat call
            yield relative + key, None
        else:
            yield relative + key, _unreadable(entry, real_root)


def _unreadable(entry: os.DirEntry[str], real_root: str) -> str | None:
    """Why an entry that is not a plain file is not read (None: a link to a file inside)."""
    if not entry.is_symlink():
        return f"not a regular file (a {_kind(entry.path)})"
    target = os.path.realpath(entry.path)
    if not os.path.exists(target):
        return "a broken symbolic link"
    if os.path.commonpath([real_root, target]) != real_root:
        return "a symbolic link to outside the input folder"
    if os.path.isdir(target):
        return "a symbolic link to a folder (not followed)"
    if not os.path.isfile(target):
        return f"a symbolic link to something that is not a regular file (a {_kind(target)})"
    return None


def _kind(path: str) -> str:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "file that is gone"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
        return "device"
    return "special file"
