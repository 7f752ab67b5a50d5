"""The operator's few reads over HTTP outside the API server (router pods' counters, the
catalog's Prometheus): no proxy from the environment, a timeout, a size bound."""

from __future__ import annotations

import urllib.request

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def bounded_get(url: str, timeout: float, max_bytes: int) -> bytes | None:
    """The body, or None when the server does not answer in time or sends more."""
    try:
        with NO_PROXY.open(url, timeout=timeout) as response:
            body: bytes = response.read(max_bytes + 1)
    except OSError:
        return None
    return body if len(body) <= max_bytes else None
