"""Reading multi-document YAML manifests the way kubectl does."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from inferops.api.kinds import ALL_KINDS
from inferops.contract.untrusted import MAX_BYTES, UntrustedInputError, load_yaml_documents

# Bigger than anything the API server takes (3 MiB a request); reading stops past it, so
# `/dev/zero` or a huge file cannot exhaust memory.
MAX_FILE_BYTES: Final = MAX_BYTES


class ManifestError(Exception):
    """A manifest file that cannot be read as Kubernetes objects."""


@dataclass(frozen=True)
class Document:
    source: str
    index: int
    obj: dict[str, Any]


def _read(path: str, max_bytes: int) -> bytes:
    try:
        with Path("/dev/stdin" if path == "-" else path).open("rb") as stream:
            return stream.read(max_bytes + 1)
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_documents(paths: Iterable[str], max_bytes: int = MAX_FILE_BYTES) -> list[Document]:
    """Every non-empty YAML document of every file, in order; `-` reads standard input.

    The files are untrusted (anyone's manifests): read with the bounded YAML reader, so
    hostile nesting, numbers or aliases are a ManifestError naming the file and line.
    """
    documents: list[Document] = []
    for path in paths:
        try:
            loaded = load_yaml_documents(_read(path, max_bytes), max_bytes=max_bytes)
        except UntrustedInputError as exc:
            where = f" line {exc.line}:" if exc.line is not None else ""
            raise ManifestError(f"{path}:{where} invalid YAML: {exc.problem}") from None
        for index, obj in enumerate(loaded):
            if obj is None:
                continue
            if not isinstance(obj, dict):
                raise ManifestError(f"{path}: document {index + 1} is not a Kubernetes object")
            documents.append(Document(path, index, obj))
    return documents


def check_kinds(documents: Iterable[Document]) -> None:
    """Raises ManifestError for a document that is not one of the Inferops kinds."""
    for doc in documents:
        kind = doc.obj.get("kind")
        # Not a str (`kind: [RealTimeService]`) is unhashable or never a kind: same answer.
        if not isinstance(kind, str) or kind not in ALL_KINDS:
            raise ManifestError(
                f"{doc.source}: document {doc.index + 1}: unknown kind {kind!r:.80}; "
                f"expected one of {', '.join(ALL_KINDS)}"
            )
