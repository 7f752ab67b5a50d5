"""Patterns for object-storage and local paths, shared by the models and the worker."""

from __future__ import annotations

from typing import Final

# obs://bucket/key and s3://bucket/key (S3 API), file:// URLs and plain absolute or relative
# local paths (local runs and tests). https:// is only for manifest sources (pre-signed URLs).
STORAGE_PATH_PATTERN: Final = (
    r"^((obs|s3)://[a-z0-9][-a-z0-9.]{1,61}[a-z0-9](/\S*)?|file://\S+|[^:\s]+)$"
)
FLAVOR_NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
POOL_NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
