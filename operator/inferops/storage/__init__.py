"""Where data lives: obs:// and s3:// (an S3 API endpoint), https:// and local files.

Used by the batch worker, `fetch-model` and the data-collection agent; it never imports
the operator. Each scheme has its own store (object_store, local_store, https_store) behind
one interface (store.Store); `Storage` picks the store from a location's scheme, so callers
never branch on it for I/O.
"""

from inferops.storage.dispatch import Storage
from inferops.storage.egress import EgressError, EgressPolicy
from inferops.storage.errors import StorageError, TooLargeError
from inferops.storage.https_store import HttpsStore
from inferops.storage.local_store import LocalStore
from inferops.storage.location import Location, Scheme, parse_location
from inferops.storage.object_store import DEFAULT_REGION, ENDPOINT_ENV, ObjectStore
from inferops.storage.store import Store, Writer

__all__ = [
    "DEFAULT_REGION",
    "ENDPOINT_ENV",
    "EgressError",
    "EgressPolicy",
    "HttpsStore",
    "LocalStore",
    "Location",
    "ObjectStore",
    "Scheme",
    "Storage",
    "StorageError",
    "Store",
    "TooLargeError",
    "Writer",
    "parse_location",
]
