"""Prometheus metrics of the operator: reconciles, their duration, phase and reason
transitions, status refreshes, and how many services stand in each phase for each reason
(what alert rules are written on: charts/inferops/files/alerts.yaml)."""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
REASONS = Counter(
    "inferops_reason_transitions_total",
    "Changes of a service's Ready reason, by the reason it came to (ImagePullBackOff, "
    "Unschedulable, ChildRefused, Running, ...).",
    ["kind", "reason"],
)
QUEUE_DEPTH = Gauge("inferops_workqueue_depth", "Objects waiting for a pass (queued or due later).")
ADMISSIONS = Counter(
    "inferops_admission_reviews_total", "Webhook verdicts by kind.", ["kind", "allowed"]
)


class ServiceStates(Collector):
    """The phase and Ready reason of every service the operator passed over, exported as
    `inferops_services{kind, phase, reason}`: how many stand there now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str, str], tuple[str, str]] = {}

    def set(self, key: tuple[str, str, str], phase: str, reason: str) -> None:
        with self._lock:
            self._states[key] = (phase, reason)

    def drop(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._states.pop(key, None)

    def counts(self) -> Tally[tuple[str, str, str]]:
        with self._lock:
            return Tally((key[0], *state) for key, state in self._states.items())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "inferops_services",
            "Services by kind, phase and the Ready condition's reason.",
            labels=["kind", "phase", "reason"],
        )
        for labels, count in sorted(self.counts().items()):
            family.add_metric(list(labels), count)
        yield family


SERVICES = ServiceStates()
REGISTRY.register(SERVICES)


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
