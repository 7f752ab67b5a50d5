"""Prometheus metrics of the operator: reconciles, their duration, phase transitions,
status refreshes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter(
    "inferops_reconciles_total", "Reconciles by kind and result.", ["kind", "result"]
)
RECONCILE_SECONDS = Histogram("inferops_reconcile_seconds", "Reconcile duration by kind.", ["kind"])
TRANSITIONS = Counter(
    "inferops_phase_transitions_total", "Phase changes of the custom resources.", ["kind", "phase"]
)
REFRESHES = Counter(
    "inferops_status_refreshes_total",
    "Passes asked for by child events, by kind: queued, or coalesced into one already waiting.",
    ["kind", "result"],
)
QUEUE_DEPTH = Gauge("inferops_workqueue_depth", "Objects waiting for a pass (queued or due later).")
ADMISSIONS = Counter(
    "inferops_admission_reviews_total", "Webhook verdicts by kind.", ["kind", "allowed"]
)


@contextmanager
def timed(kind: str) -> Iterator[None]:
    """Counts and times one reconcile; an exception counts as an error and propagates."""
    start = time.monotonic()
    try:
        yield
    except Exception:
        RECONCILES.labels(kind, "error").inc()
        raise
    else:
        RECONCILES.labels(kind, "ok").inc()
    finally:
        RECONCILE_SECONDS.labels(kind).observe(time.monotonic() - start)


def serve(port: int, address: str = "0.0.0.0") -> None:
    start_http_server(port, addr=address)
