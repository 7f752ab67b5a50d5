"""What the routers measured over a rollout's step, read by the operator from the router
pods themselves (no Prometheus needed).

Each router pod's agent serves its counters on port 9090. A step's ratios are a new router
config, and a new config rolls the router pods, so the pods that run the current config
(their config-hash annotation) have counted exactly the step's traffic: their counters,
summed, are the step's window. Only split requests count (pinned ones are not part of a
share). Reading is bounded (size, time) and goes only to the pod IPs the API server gives.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from inferops.contract.router import (
    DEFAULT_METRICS_PORT,
    METRICS_PATH,
    ROUTE_SHADOW,
    ROUTE_SPLIT,
)
from inferops.reconcile.http_get import bounded_get
from inferops.reconcile.rollout import Reading, Window

MAX_BYTES = 2 * 1024 * 1024
TIMEOUT_SECONDS = 2.0
CONFIG_HASH = "serving.inferops.dev/config-hash"
_REQUESTS = "inferops_router_requests_total"
_BUCKET = "inferops_router_request_duration_seconds_bucket"
_COMPARED = "inferops_router_shadow_comparisons_total"
_SAMPLE = re.compile(r"^([a-z_]+)\{([^}]*)\} ([0-9.e+-]+|\+Inf|NaN)$")
_LABEL = re.compile(r'([a-z_]+)="([^"]*)"')


@dataclass
class Counts:
    """Split requests of one version as counted by some router pods."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count

    def add(self, other: Counts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        for le, n in other.buckets.items():
            self.buckets[le] = self.buckets.get(le, 0.0) + n


@dataclass
class VersionCounts:
    """One version's counts: as part of the split, as a shadow, and how its shadow answers
    compared with production's."""

    split: Counts = field(default_factory=Counts)
    shadow: Counts = field(default_factory=Counts)
    agreed: float = 0.0
    compared: float = 0.0


def _sample(line: str) -> tuple[str, dict[str, str], float] | None:
    """(metric, labels, value) of one of our sample lines; None for anything else."""
    if not line.startswith((_REQUESTS, _BUCKET, _COMPARED)):
        return None
    found = _SAMPLE.match(line)
    if found is None:
        return None
    try:
        value = float(found[3])
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    labels = dict(_LABEL.findall(found[2]))
    return (found[1], labels, value) if "version" in labels else None


def parse(text: str) -> dict[str, VersionCounts]:
    """version -> its counts, from one pod's /metrics text (other lines ignored)."""
    out: dict[str, VersionCounts] = {}
    for line in text.splitlines():
        sample = _sample(line)
        if sample is None:
            continue
        metric, labels, value = sample
        entry = out.setdefault(labels["version"], VersionCounts())
        if metric == _COMPARED:
            entry.compared += value
            if labels.get("status") == "same" and labels.get("body") == "same":
                entry.agreed += value
            continue
        route = labels.get("route")
        counts = {ROUTE_SPLIT: entry.split, ROUTE_SHADOW: entry.shadow}.get(route or "")
        if counts is None:
            continue
        if metric == _REQUESTS:
            counts.requests += value
            if labels.get("code") in ("5xx", "error"):
                counts.errors += value
        elif "le" in labels:
            le = math.inf if labels["le"] == "+Inf" else float(labels["le"])
            counts.buckets[le] = counts.buckets.get(le, 0.0) + value
    return out


def quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """Prometheus' histogram_quantile over cumulative buckets, in seconds (None when
    empty); an answer in the last finite bucket's range is that bucket's bound."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    below, lower = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (le - lower) * share
        below, lower = count, le
    return lower


def window(counts: Iterable[Counts], q: float) -> Window:
    merged = Counts()
    for c in counts:
        merged.add(c)
    seconds = quantile(merged.buckets, q)
    return Window(
        int(merged.requests),
        int(merged.errors),
        None if seconds is None else round(seconds * 1000, 3),
    )


def reading(
    per_pod: Iterable[Mapping[str, VersionCounts]], candidate: str, q: float, shadow: bool = False
) -> Reading:
    """The candidate's window (its shadow answers in a shadow step) and the other versions'
    split together (the stable side); in a shadow step, how its answers compared."""
    mine: list[Counts] = []
    theirs: list[Counts] = []
    agreed = compared = 0.0
    for pod in per_pod:
        for version, counts in pod.items():
            if version == candidate:
                mine.append(counts.shadow if shadow else counts.split)
                agreed += counts.agreed
                compared += counts.compared
            else:
                theirs.append(counts.split)
    agreement = (int(agreed), int(compared)) if shadow else None
    return Reading(window(mine, q), window(theirs, q), agreement=agreement)


class MetricsSource(Protocol):
    """Where a pass reads router pods' counters (the real one fetches them over HTTP)."""

    def fetch(self, pod_ip: str) -> str | None: ...


class HttpMetrics:
    """GET http://<pod IP>:9090/metrics, bounded; None when the pod does not answer."""

    def __init__(self, timeout: float = TIMEOUT_SECONDS) -> None:
        self.timeout = timeout

    def fetch(self, pod_ip: str) -> str | None:
        try:
            address = ipaddress.ip_address(pod_ip)
        except ValueError:
            return None
        host = f"[{address}]" if address.version == 6 else str(address)
        url = f"http://{host}:{DEFAULT_METRICS_PORT}{METRICS_PATH}"
        body = bounded_get(url, self.timeout, MAX_BYTES)
        return None if body is None else body.decode("utf-8", errors="replace")


def router_pods(pods: Iterable[Mapping[str, Any]], config_hash: str) -> list[str]:
    """IPs of the router pods that run this config."""
    ips = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (meta.get("labels") or {}).get("app.kubernetes.io/component") != "router":
            continue
        if (meta.get("annotations") or {}).get(CONFIG_HASH) != config_hash:
            continue
        ip = (pod.get("status") or {}).get("podIP")
        if isinstance(ip, str) and ip:
            ips.append(ip)
    return ips


def read_step(  # noqa: PLR0917 - what one step's reading depends on
    source: MetricsSource,
    pods: Iterable[Mapping[str, Any]],
    config_hash: str,
    candidate: str,
    q: float,
    shadow: bool = False,
) -> Reading | None:
    """The step's reading from every router pod of the config that answers; None when
    none does (no reading is not a breach)."""
    texts = [source.fetch(ip) for ip in router_pods(pods, config_hash)]
    parsed = [parse(t) for t in texts if t is not None]
    return reading(parsed, candidate, q, shadow) if parsed else None
