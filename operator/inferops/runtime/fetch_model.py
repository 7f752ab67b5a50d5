"""`inferops fetch-model`: copies model files into /mnt/models before the model starts.

The files come from the app's `modelUri` (anyone's bucket) and the destination may already
hold files and links (a restarted init container, a local run into an existing folder), so
the copy never writes outside `dest`:

- a file whose path under the source climbs out (`..`) or is absolute (object keys such
  as `v1/../../etc/x` or `v1//etc/x`) is refused, before anything is written;
- below `dest` (dest itself may be a link: the user named it), each folder is opened
  relative to its parent's descriptor with O_NOFOLLOW, so a link to elsewhere is refused,
  not followed, however the tree changes meanwhile; an existing link where a file goes is
  refused too;
- each file is streamed into a new temporary file (O_EXCL | O_NOFOLLOW) in its folder and
  renamed over its name: the model never sees half a file.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from contextlib import suppress
from pathlib import Path, PurePosixPath

from inferops.contract import fetch_model as contract
from inferops.storage import Location, Storage, StorageError, parse_location

DEFAULT_DEST = Path(contract.DEFAULT_DEST)
CHUNK_BYTES = 1024 * 1024
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def fetch_model(
    source: str, dest: Path = DEFAULT_DEST, endpoint: str | None = None, region: str | None = None
) -> list[Path]:
    """Copies a file or folder from obs://, s3://, https:// or file:// into dest; returns
    the files written. StorageError (with the path) for anything it refuses or cannot do."""
    storage = Storage(endpoint=endpoint, region=region)
    location = parse_location(source)
    files = storage.store_for(location).tree(location)
    for file, relative in files:
        _check_relative(file, relative, dest)
    root = _open_dest(dest)
    try:
        return [_fetch_one(storage, file, relative, dest, root) for file, relative in files]
    finally:
        os.close(root)


def _check_relative(file: Location, relative: PurePosixPath, dest: Path) -> None:
    # PurePosixPath has folded `a//b` and `a/./b` (harmless), but keeps `..` and a root.
    if (
        relative.is_absolute()
        or not relative.parts
        or ".." in relative.parts
        or "\0" in str(relative)
    ):
        raise StorageError(
            f"{file.text}: refusing a file whose path {str(relative)!r:.200} is not a plain "
            f"path inside {dest}"
        )


def _open_dest(dest: Path) -> int:
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StorageError(f"{dest}: exists and is not a folder") from None
    except OSError as exc:
        raise StorageError(f"{dest}: cannot create the folder: {exc.strerror}") from None
    try:
        return os.open(dest, _FOLDER_FLAGS)
    except OSError as exc:
        raise StorageError(f"{dest}: cannot open the folder: {exc.strerror}") from None


def _enter(parent: int, name: str, shown: Path) -> int:
    """The descriptor of folder `name` under `parent` (made if missing), never a link."""
    with suppress(FileExistsError):
        os.mkdir(name, 0o755, dir_fd=parent)
    try:
        return os.open(name, _FOLDER_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
    except OSError as exc:
        # Linux says ENOTDIR (not ELOOP) for a link opened with O_DIRECTORY | O_NOFOLLOW.
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(parent, name):
            raise StorageError(
                f"{shown}: is a symbolic link; refusing to write through it"
            ) from None
        if exc.errno == errno.ENOTDIR:
            raise StorageError(f"{shown}: exists and is not a folder") from None
        raise StorageError(f"{shown}: {exc.strerror}") from None


def _is_link(folder: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=folder).st_mode)
    except OSError:
        return False


def _fetch_one(
    storage: Storage, file: Location, relative: PurePosixPath, dest: Path, root: int
) -> Path:
    target = dest.joinpath(*relative.parts)
    folders = [os.dup(root)]
    try:
        for depth, name in enumerate(relative.parts[:-1], start=1):
            folders.append(_enter(folders[-1], name, dest.joinpath(*relative.parts[:depth])))
        _write(storage, file, folders[-1], relative.parts[-1], target)
    finally:
        for folder in folders:
            os.close(folder)
    return target


def _write(storage: Storage, file: Location, folder: int, name: str, target: Path) -> None:
    with suppress(FileNotFoundError):
        mode = os.lstat(name, dir_fd=folder).st_mode
        if stat.S_ISLNK(mode):
            raise StorageError(f"{target}: is a symbolic link; refusing to write through it")
        if stat.S_ISDIR(mode):
            raise StorageError(f"{target}: exists and is a folder")
    temporary = f".fetch-{secrets.token_hex(8)}.part"  # short: the name may be near 255 bytes
    try:
        out = os.open(temporary, _NEW_FILE_FLAGS, 0o644, dir_fd=folder)
    except OSError as exc:
        raise StorageError(f"{target}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(out, "wb") as handle:
            for chunk in storage.iter_chunks(file, CHUNK_BYTES):
                handle.write(chunk)
        # A rename replaces whatever has the name (even a link made meanwhile) and never
        # follows it.
        os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
    except OSError as exc:
        with suppress(OSError):
            os.unlink(temporary, dir_fd=folder)
        raise StorageError(f"{target}: cannot write: {exc.strerror}") from None
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary, dir_fd=folder)
        raise
