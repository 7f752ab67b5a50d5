"""Names of child objects: readable, valid DNS-1035 labels, stable across reconciles."""

from __future__ import annotations

import hashlib
import re

MAX_LABEL = 63


def _slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", text.lower())).strip("-")


def child_name(*parts: str) -> str:
    """`a-b-c` from the parts when that is already a valid label.

    Otherwise (a version such as 1.0.0 has dots, or the name is too long) the readable
    slug is shortened and suffixed with a hash of the exact parts: "1.0" and "1-0" never
    share a name, and a name never changes between reconciles.
    """
    raw = "-".join(parts)
    slug = "-".join(p for p in (_slug(part) for part in parts) if p)
    if slug == raw and len(slug) <= MAX_LABEL:
        return slug
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:8]
    return f"{slug[: MAX_LABEL - 9].rstrip('-')}-{digest}"
