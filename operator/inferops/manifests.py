"""Reading multi-document YAML manifests the way kubectl does."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from inferops.api.kinds import ALL_KINDS


class ManifestError(Exception):
    """A manifest file that cannot be read as Kubernetes objects."""


@dataclass(frozen=True)
class Document:
    source: str
    index: int
    obj: dict[str, Any]


def read_documents(paths: Iterable[str]) -> list[Document]:
    """Every non-empty YAML document of every file, in order; `-` reads standard input."""
    documents: list[Document] = []
    for path in paths:
        try:
            text = Path("/dev/stdin" if path == "-" else path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ManifestError(f"{path}: cannot read: {reason}") from None
        try:
            loaded = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ManifestError(f"{path}:{where}: invalid YAML: {problem}") from None
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
        if kind not in ALL_KINDS:
            raise ManifestError(
                f"{doc.source}: document {doc.index + 1}: unknown kind {kind!r}; "
                f"expected one of {', '.join(ALL_KINDS)}"
            )
