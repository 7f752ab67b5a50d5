"""`inferops fetch-model`: copies model files into /mnt/models before the model starts."""

from __future__ import annotations

from pathlib import Path

from inferops.contract import fetch_model as contract
from inferops.storage import Storage, parse_location

DEFAULT_DEST = Path(contract.DEFAULT_DEST)


def fetch_model(
    source: str, dest: Path = DEFAULT_DEST, endpoint: str | None = None, region: str | None = None
) -> list[Path]:
    """Copies a file or folder from obs://, s3://, https:// or file:// into dest."""
    storage = Storage(endpoint=endpoint, region=region)
    return storage.download_tree(parse_location(source), dest)
