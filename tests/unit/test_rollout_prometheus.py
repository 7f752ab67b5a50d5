"""Rollout gates of one's own, against a real Prometheus (Debian's) scraping the real
router agent in front of real nginx: the query's placeholders are filled, its number
read, and a breach rolls back like any gate."""

from __future__ import annotations

import contextlib
import datetime
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferops.api.realtime import RealTimeServiceSpec
from inferops.api.rollout import Rollout, RolloutStatus
from inferops.reconcile.prometheus import HttpPrometheus, fill, value_of
from inferops.reconcile.rollout import Reading, Window, decide
from inferops.reconcile.rollout_pass import gate_queries
from inferops.resources.desired import Service
from inferops.resources.nginx import Backend
from tests.router_support import fire, free_port, running_router, running_upstreams
from tests.unit.rules_table import rts, version

OLD, NEW = "iris:1.0.0", "iris:2.0.0"
ERRORS = (
    'sum(inferops_router_requests_total{version="$version",route="split",code="5xx"})'
    ' / sum(inferops_router_requests_total{version="$version",route="split"})'
)


@contextlib.contextmanager
def running_prometheus(target: str) -> Iterator[str]:
    """Prometheus scraping `target` every second; yields its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed (Debian: apt-get install prometheus)")
    with tempfile.TemporaryDirectory(prefix="inferops-prom-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {"job_name": "router", "static_configs": [{"targets": [target]}]}
                    ],
                }
            )
        )
        port = free_port()
        with (Path(tmp) / "log").open("wb") as log:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp}/data",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                assert process.poll() is None, (Path(tmp) / "log").read_text()
                assert time.monotonic() < deadline, "prometheus did not get ready"
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            process.wait(15)


def rollout() -> Rollout:
    return Rollout.model_validate(
        {
            "version": NEW,
            "steps": [{"percent": 50, "bakeSeconds": 300}, {"percent": 100}],
            "gates": {
                "minRequests": 10,
                "queries": [{"name": "errors", "query": ERRORS, "max": 0.05}],
            },
        }
    )


def test_a_query_gate_reads_the_catalogs_prometheus_and_rolls_back_on_a_breach() -> None:
    with running_upstreams("one", "fail-two") as up:
        backends = [
            Backend("one", up["one"], 50, OLD),
            Backend("fail-two", up["fail-two"], 50, NEW),
        ]
        with running_router(backends, agent=True) as router:
            replies, _ = fire(router.url, 200)
            assert {r.status for r in replies} == {200, 500}
            with running_prometheus(f"127.0.0.1:{router.metrics_port}") as url:
                spec = rts(version("1.0.0", 0), version("2.0.0", 100), rollout=rollout().to_dict())
                obj = {**spec, "metadata": {"name": "svc", "namespace": "ns"}}
                service = Service(obj, RealTimeServiceSpec.model_validate(spec["spec"]), {})
                start = datetime.datetime(2026, 11, 30, 9, tzinfo=datetime.UTC)
                first = decide(
                    rollout(),
                    {OLD: 0, NEW: 100},
                    previous=None,
                    running={OLD: 100, NEW: 0},
                    reading=None,
                    now=start,
                )
                assert first.status is not None
                values: dict[str, float | None] = {}
                deadline = time.monotonic() + 30
                while values.get("errors") is None:  # the first scrapes
                    assert time.monotonic() < deadline, "no value from prometheus"
                    time.sleep(0.5)
                    values = gate_queries(service, first.status, url, start, None)
                assert values == {"errors": 1.0}  # every answer of fail-two is a 500
                reading = Reading(Window(100, 100, 10.0), Window(100, 0, 10.0), values)
                later = start + datetime.timedelta(seconds=60)
                status = RolloutStatus.model_validate(first.status.to_dict())
                decision = decide(
                    rollout(),
                    {OLD: 0, NEW: 100},
                    previous=status,
                    running=first.ratios,
                    reading=reading,
                    now=later,
                )
                assert decision.status is not None and decision.status.phase == "RolledBack"
                assert "query:errors 1 > 0.05" in decision.status.message
                # A query naming nothing is no reading, never a breach.
                assert HttpPrometheus(url).query('absent_metric{x="y"}') is None


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"status": "success", "data": {"resultType": "scalar", "result": [1, "0.5"]}}, 0.5),
        (
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "2"]}]},
            },
            2.0,
        ),
        ({"status": "success", "data": {"resultType": "vector", "result": []}}, None),
        ({"status": "success", "data": {"resultType": "scalar", "result": [1, "NaN"]}}, None),
        ({"status": "error", "error": "bad query"}, None),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, None),
        ([1, 2], None),
    ],
)
def test_the_answer_is_one_number_or_none(document: object, expected: float | None) -> None:
    assert value_of(document) == expected


def test_placeholders_are_filled_and_other_words_left_alone() -> None:
    filled = fill("$version $versions [$window]", {"version": "a:1", "window": "30s"})
    assert filled == "a:1 $versions [30s]"
