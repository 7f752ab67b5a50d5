"""Per-version RED metrics of a router, from nginx's access log and from the shadow relay.

nginx sends one syslog datagram per request (`inferops.resources.nginx`: route, version,
status, seconds). Only the versions the agent's configuration names become label values,
so a malformed or forged line can never grow the number of series; such lines are counted
and dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from inferops.contract.router import LOG_TAG, ROUTE_PINNED, ROUTE_SHADOW, ROUTE_SPLIT

MAX_LINE = 1024
# Model answers take milliseconds to minutes.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_ROUTES = frozenset({ROUTE_SPLIT, ROUTE_PINNED})
_MARKER = f" {LOG_TAG}: ".encode()
NO_ANSWER = "error"  # the code label of a shadow request that got no HTTP answer


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


class RouterMetrics:
    """The router's metrics in their own registry (served at /metrics by the agent)."""

    def __init__(self, versions: Iterable[str]) -> None:
        self.versions = frozenset(versions)
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "inferops_router_requests_total",
            "Requests answered by a version, by route (split, pinned, shadow) and status "
            "class (2xx..5xx; error: a shadow that gave no answer).",
            ["version", "route", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "inferops_router_request_duration_seconds",
            "Time from the request to the last byte of the answer, per version and route.",
            ["version", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.refused = Counter(
            "inferops_router_refused_total",
            "Requests the router answered itself: 429 beyond the traffic limit, 400 for an "
            "unknown pinned version, 404 for an unknown /versions/ path.",
            ["code"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "inferops_router_in_flight_requests",
            "Requests nginx is reading or answering (from its stub_status).",
            registry=self.registry,
        )
        self.invalid_lines = Counter(
            "inferops_router_invalid_log_lines_total",
            "Access log datagrams that were not a line of the router's own format.",
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "inferops_router_shadow_dropped_total",
            "Copies not sent to a shadow: busy (max in flight reached).",
            ["version", "reason"],
            registry=self.registry,
        )
        self.comparisons = Counter(
            "inferops_router_shadow_comparisons_total",
            "Answers of a shadow paired with production's (data collection on, or a "
            "rollout's shadow step): whether the statuses and the bodies were the same. A "
            "shadow that gave no answer is not compared (it counts as its error).",
            ["version", "production", "status", "body"],
            registry=self.registry,
        )
        self._requests: dict[tuple[str, str, str], Counter] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}

    def observe(self, version: str, route: str, code: str, seconds: float) -> None:
        key = (version, route, code)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.requests.labels(version, route, code)
        counter.inc()
        hist = self._durations.get((version, route))
        if hist is None:
            hist = self._durations[(version, route)] = self.duration.labels(version, route)
        hist.observe(seconds)

    def observe_shadow(self, version: str, status: int | None, seconds: float) -> None:
        code = NO_ANSWER if status is None else status_class(status)
        self.observe(version, ROUTE_SHADOW, code, seconds)

    def log_line(self, datagram: bytes) -> None:
        """One syslog datagram from nginx: `<PRI>TIMESTAMP inferops: ROUTE VERSION STATUS
        SECONDS UPSTREAM_STATUS`; an upstream status `-` means nginx answered itself."""
        fields = _fields(datagram)
        if fields is None:
            self.invalid_lines.inc()
            return
        route, version, status, seconds, answered = fields
        if not answered:
            self.refused.labels(str(status)).inc()
        elif version in self.versions and route in _ROUTES:
            self.observe(version, route, status_class(status), seconds)
        else:
            self.invalid_lines.inc()


def _fields(datagram: bytes) -> tuple[str, str, int, float, bool] | None:
    if len(datagram) > MAX_LINE:
        return None
    _, marker, message = datagram.partition(_MARKER)
    parts = message.strip().split(b" ", 4)
    if not marker or len(parts) != 5:
        return None
    try:
        route, version = parts[0].decode("ascii"), parts[1].decode("ascii")
        status, seconds = int(parts[2]), float(parts[3])
    except (UnicodeDecodeError, ValueError):
        return None
    if not 0 <= seconds < 1e7 or not 100 <= status <= 599:
        return None
    return route, version, status, seconds, parts[4] != b"-"
