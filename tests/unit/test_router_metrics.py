"""The router agent's reading of nginx's access log: one table of datagrams, the well-formed
and the hostile. Only versions of the configuration become label values."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from inferops.runtime.router.metrics import RouterMetrics

HEAD = b"<190>Nov 30 09:08:31 inferops: "


def metrics_after(*lines: bytes) -> dict[str, float]:
    metrics = RouterMetrics(["iris:1.0.0", "iris:2.0.0"])
    for line in lines:
        metrics.log_line(line)
    out = {}
    for row in generate_latest(metrics.registry).decode().splitlines():
        if row and not row.startswith("#") and "_created" not in row:
            name, _, value = row.rpartition(" ")
            if float(value):
                out[name] = float(value)
    return out


REQ = 'inferops_router_requests_total{code="%s",route="%s",version="%s"}'
INVALID = "inferops_router_invalid_log_lines_total"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"split iris:1.0.0 200 0.004 200", {REQ % ("2xx", "split", "iris:1.0.0"): 1}),
        (b"pinned iris:2.0.0 503 1.5 503", {REQ % ("5xx", "pinned", "iris:2.0.0"): 1}),
        # nginx tried two servers: the upstream status lists both
        (b"split iris:1.0.0 502 0.1 502, 502", {REQ % ("5xx", "split", "iris:1.0.0"): 1}),
        # answered by nginx itself (no upstream): the limit, an unknown pin
        (b"split iris:1.0.0 429 0.000 -", {'inferops_router_refused_total{code="429"}': 1}),
        (b"pinned - 400 0.000 -", {'inferops_router_refused_total{code="400"}': 1}),
        # hostile or broken lines never make a series
        (b"split iris:9.9.9 200 0.1 200", {INVALID: 1}),
        (b"split iris:1.0.0\xff 200 0.1 200", {INVALID: 1}),
        (b"shadow iris:1.0.0 200 0.1 200", {INVALID: 1}),
        (b"split iris:1.0.0 200 nan 200", {INVALID: 1}),
        (b"split iris:1.0.0 200 -1 200", {INVALID: 1}),
        (b"split iris:1.0.0 999 0.1 200", {INVALID: 1}),
        (b"split iris:1.0.0 200", {INVALID: 1}),
        (b"split iris:1.0.0 200 0.1 200 " + b"x" * 2000, {INVALID: 1}),
    ],
)
def test_log_lines(line: bytes, expected: dict[str, float]) -> None:
    found = metrics_after(HEAD + line)
    assert {k: v for k, v in found.items() if not k.startswith("inferops_router_request_d")} == (
        expected
    )


def test_a_datagram_without_the_tag_is_invalid() -> None:
    assert metrics_after(b"<190>Nov 30 09:08:31 other: split iris:1.0.0 200 0.1 200") == {
        INVALID: 1
    }


def test_latency_lands_in_the_histogram_of_its_version_and_route() -> None:
    found = metrics_after(
        HEAD + b"split iris:1.0.0 200 0.3 200", HEAD + b"split iris:1.0.0 200 3 200"
    )
    hist = 'inferops_router_request_duration_seconds_bucket{le="%s",route="split",version="iris:1.0.0"}'
    assert found[hist % "0.5"] == 1
    assert found[hist % "5.0"] == 2
    assert (
        found['inferops_router_request_duration_seconds_sum{route="split",version="iris:1.0.0"}']
        == 3.3
    )
