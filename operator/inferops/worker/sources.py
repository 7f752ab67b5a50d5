"""The inputs of a batch run, in one deterministic order, and each worker's shard of them.

Every worker streams the whole listing (or manifest) and keeps the positions p with
p % count == index, so the shards are disjoint, cover everything, and need no coordination.
Nothing here holds more than one listing page, one directory or one manifest line at a time
(except the set of result names of a manifest: see `ResultNames`).
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from inferops.contract.untrusted import UntrustedInputError, load_json
from inferops.storage import Location, Storage, StorageError, parse_location
from inferops.worker.folders import Item as _Item
from inferops.worker.folders import folder_sources

MANIFEST_SUFFIX = ".manifest"
MAX_MANIFEST_LINE = 1024 * 1024
_QUOTED_PREFIX = 200  # characters of an unusable line kept as its "source" in the report


@dataclass(frozen=True, slots=True)
class Source:
    """One input of this worker.

    `text` is the source as given (for a malformed manifest line: the raw line), `name` the
    result name under infer-result-{taskId}/ (without `_result.txt`), `filename` the
    source's file name (sent with file input, and its extension picks the size limit),
    `shard_index` the position within this worker's shard (what resume counts), `error` set
    when the source is FAILED without being read (a manifest line naming no usable source,
    a folder entry that is not read: see worker.folders).
    """

    position: int
    shard_index: int
    text: str
    location: Location | None
    name: str
    filename: str = ""
    error: str | None = None


def is_manifest(input_path: str) -> bool:
    return input_path.split("?", 1)[0].endswith(MANIFEST_SUFFIX)


def file_name(location: Location) -> str:
    """The last path segment, by plain string splitting: pathlib would intern every file
    name into the interpreter's string table (see storage.Location.child)."""
    if location.scheme == "s3":
        return location.key.rsplit("/", 1)[-1]
    if location.scheme == "https":
        return urllib.parse.urlsplit(location.text).path.rsplit("/", 1)[-1]
    return os.path.basename(location.path)


def parse_source(text: str, allow_http: bool = False) -> Location:
    """A source location; http:// only when the config allows it (read like https://)."""
    if allow_http and text[:7].lower() == "http://":
        return Location("https", text)
    return parse_location(text)


def iter_shard(
    storage: Storage, input_path: str, index: int, count: int, allow_http: bool = False
) -> Iterator[Source]:
    """This worker's sources, in order. StorageError when the input cannot be listed."""
    folder_or_manifest = parse_location(input_path)
    items = (
        _manifest_sources(storage, folder_or_manifest, allow_http)
        if is_manifest(input_path)
        else folder_sources(storage, folder_or_manifest)
    )
    shard_index = 0
    for position, item in enumerate(items):
        if position % count == index:
            text, location, name, error = item
            filename = file_name(location) if location is not None else ""
            yield Source(position, shard_index, text, location, name, filename, error)
            shard_index += 1


# ---- manifests -------------------------------------------------------------------------------


class ResultNames:
    """Result names of manifest sources: the basename, or `{name}_{line}` when an earlier
    line already used it.

    Every worker sees every line, so all agree on every name. The used names are kept as a
    set of 64-bit hashes: memory grows with the manifest's line count (about 60 bytes a
    line), the one thing here that does. The hash is stable across processes (not Python's
    salted hash()), so a rare false "already used" adds the same suffix in every worker.
    """

    def __init__(self) -> None:
        self._used: set[int] = set()

    @staticmethod
    def _key(name: str) -> int:
        digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8)
        return int.from_bytes(digest.digest(), "little")

    def claim(self, basename: str, line: int) -> str:
        name = basename if basename not in ("", ".", "..") else "source"
        while self._key(name) in self._used:
            name = f"{name}_{line}"
        self._used.add(self._key(name))
        return name


def split_lines(chunks: Iterable[bytes], max_line: int) -> Iterator[tuple[bytes, bool]]:
    """(line, too_long) for each line of a byte stream; a line over max_line bytes is cut
    to its start so one bad line cannot exhaust memory."""
    buffer = bytearray()
    too_long = False
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if not too_long:
                buffer += piece
                if len(buffer) > max_line:
                    too_long = True
                    del buffer[_QUOTED_PREFIX:]
            if end < 0:
                break
            yield bytes(buffer), too_long
            buffer.clear()
            too_long = False
            start = end + 1
    if buffer or too_long:
        yield bytes(buffer), too_long


def _quote(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    return text if len(text) <= _QUOTED_PREFIX else text[:_QUOTED_PREFIX] + "..."


def _manifest_sources(storage: Storage, manifest: Location, allow_http: bool) -> Iterator[_Item]:
    """One item per non-blank line; a line that names no usable source is an item with an
    error (reported FAILED, with the raw line as its source), never a crash."""
    names = ResultNames()
    lines = split_lines(storage.iter_chunks(manifest), MAX_MANIFEST_LINE)
    for number, (raw, too_long) in enumerate(lines):
        where = f"manifest line {number + 1}"
        if too_long:
            yield _quote(raw), None, "", f"{where}: longer than {MAX_MANIFEST_LINE} bytes"
            continue
        if not raw.strip():
            continue
        try:
            # Every worker reads every line: one hostile line (nested 1,000 deep, a
            # 5,000-digit number) must fail alone, not crash the whole Job.
            entry = load_json(raw, max_bytes=MAX_MANIFEST_LINE)
        except UntrustedInputError as exc:
            yield _quote(raw), None, "", f"{where}: not valid JSON ({exc})"
            continue
        source = entry.get("source") if isinstance(entry, dict) else None
        if not isinstance(source, str) or not source:
            message = f'{where}: expected a JSON object with a "source" string'
            yield _quote(raw), None, "", message
            continue
        try:
            location = parse_source(source, allow_http)
        except StorageError as exc:
            yield source, None, "", f"{where}: {exc}"
            continue
        yield source, location, names.claim(file_name(location), number), None
