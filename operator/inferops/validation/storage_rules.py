"""Where a cluster object's data lives and how it reaches storage: object storage only, and
credentials only by Secret reference.

The API models accept local paths and file:// because `inferops batch run` runs the same
spec on a workstation (it reads the spec through the worker config, not through these
rules). In a cluster a local path names the pod's own filesystem: read-only, or an emptyDir
that goes with the pod, so results would be written nowhere durable while the service
reports success. Every validator of cluster objects (CLI validate, render, the webhook,
the reconcilers) runs these rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from inferops.api.base import StorageSpec
from inferops.api.batch import BatchServiceSpec
from inferops.api.realtime import RealTimeServiceSpec

Finding = tuple[str, str]

OBJECT_STORE_SCHEMES = ("obs://", "s3://")
AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)")
MSG_LOCAL_PATH = (
    "{value!r} is not in object storage: in a cluster a local path or file:// names the "
    "pod's own filesystem (read-only, or lost with the pod); use obs://bucket/key or "
    "s3://bucket/key (local paths are for `inferops batch run`)"
)
MSG_URL_CREDENTIALS = (
    "must not carry credentials (user:password@ before the host): they would be copied "
    "into the pod's plain environment and into error messages; {instead}"
)
MSG_MODEL_URI_CREDENTIALS = MSG_URL_CREDENTIALS.format(
    instead="use s3:// or obs:// with the service's storage.secretRef, or a pre-signed https:// URL"
)


def has_userinfo(url: str) -> bool:
    """Whether a URL carries user:password@ (or user@) before its host.

    A plain scan of the authority (what follows `scheme://` up to the first / ? #), so
    that no URL, however malformed, raises here."""
    found = AUTHORITY.match(url)
    return found is not None and "@" in found.group(1)


def _object_store(path: str, value: str | None) -> Iterator[Finding]:
    if value is not None and not value.startswith(OBJECT_STORE_SCHEMES):
        yield path, MSG_LOCAL_PATH.format(value=value)


def _storage(storage: StorageSpec | None) -> Iterator[Finding]:
    if storage is not None and storage.endpoint and has_userinfo(storage.endpoint):
        instead = "put the keys in the Secret that storage.secretRef names"
        yield "spec.storage.endpoint", MSG_URL_CREDENTIALS.format(instead=instead)


def realtime_storage_rules(spec: RealTimeServiceSpec) -> Iterator[Finding]:
    collection = spec.data_collection
    if collection is not None:
        yield from _object_store("spec.dataCollection.outputPath", collection.output_path)
    yield from _storage(spec.storage)


def batch_storage_rules(spec: BatchServiceSpec) -> Iterator[Finding]:
    yield from _object_store("spec.inputPath", spec.input_path)
    yield from _object_store("spec.outputPath", spec.output_path)
    yield from _storage(spec.storage)
