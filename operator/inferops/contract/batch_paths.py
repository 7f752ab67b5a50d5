"""Whether a batch output folder lies inside the input folder it lists.

The worker lists every file under a folder input, so results written inside it would be
read back as inputs (300 inputs reported as 3,000). Validation refuses such a spec (a field
error) and the worker config refuses it again (a spec may reach a pod without the webhook).
Pure string logic: it mirrors how the worker lists (storage.Location, worker.sources) without
importing the data plane.
"""

from __future__ import annotations

import posixpath
import urllib.parse

MANIFEST_SUFFIX = ".manifest"


def _listed(path: str) -> tuple[str, str] | None:
    """(store, prefix) of what listing `path` as a folder covers: the bucket and the key
    prefix the S3 listing uses, or the normalised local path; None for what is not listed
    (https:// URLs)."""
    scheme, sep, rest = path.partition("://")
    scheme = scheme.lower() if sep else "file"
    if scheme in ("obs", "s3"):  # one S3 API, two names
        bucket, _, key = rest.partition("/")
        return f"s3:{bucket}", key if not key or key.endswith("/") else key + "/"
    if scheme == "file":
        local = urllib.parse.unquote(urllib.parse.urlsplit(path).path) if sep else path
        normal = posixpath.normpath(local) if local else "."
        # Relative and absolute paths cannot be compared without the worker's directory.
        store = "file:/" if normal.startswith("/") else "file:."
        return store, "" if normal == "." else normal.rstrip("/") + "/"
    return None


def output_inside_input(input_path: str, output_path: str) -> bool:
    """Whether the worker would list what it writes to output_path as inputs."""
    if input_path.split("?", 1)[0].endswith(MANIFEST_SUFFIX):
        return False  # a manifest names its sources; nothing is listed
    listed, written = _listed(input_path), _listed(output_path)
    return (
        listed is not None
        and written is not None
        and listed[0] == written[0]
        and written[1].startswith(listed[1])
    )


def output_inside_input_message(input_path: str) -> str:
    return (
        f"must not be inside inputPath ({input_path}): the workers would read their own "
        "results as inputs"
    )
