"""Rollout gates of one's own: instant PromQL queries to the catalog's Prometheus.

The address is the catalog's (the operator's admin sets it), never a service's; the answer
is read bounded and only its number is kept. No answer, no series or NaN is no reading
(a step waits), never a breach.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Mapping
from typing import Protocol

from inferops.reconcile.http_get import bounded_get

MAX_BYTES = 1024 * 1024
_PLACEHOLDER = re.compile(r"\$([A-Za-z_]+)")
TIMEOUT_SECONDS = 3.0


class QuerySource(Protocol):
    def query(self, promql: str) -> float | None: ...


def fill(query: str, values: Mapping[str, str]) -> str:
    """`$name` placeholders replaced; a `$word` that names none stays as written."""
    return _PLACEHOLDER.sub(lambda m: values.get(m[1], m[0]), query)


def value_of(document: object) -> float | None:
    """The number of a Prometheus /api/v1/query answer: a scalar, or the first sample of a
    vector."""
    if not isinstance(document, dict) or document.get("status") != "success":
        return None
    data = document.get("data")
    if not isinstance(data, dict):
        return None
    result = data.get("result")
    sample: object = None
    if data.get("resultType") == "scalar":
        sample = result
    elif data.get("resultType") == "vector" and isinstance(result, list) and result:
        first = result[0]
        sample = first.get("value") if isinstance(first, dict) else None
    if not isinstance(sample, list) or len(sample) != 2:
        return None
    try:
        number = float(sample[1])
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class HttpPrometheus:
    def __init__(self, url: str, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, promql: str) -> float | None:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        body = bounded_get(url, self.timeout, MAX_BYTES)
        if body is None:
            return None
        try:
            return value_of(json.loads(body))
        except (ValueError, RecursionError):
            return None
