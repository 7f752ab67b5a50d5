"""Traffic control through real nginx running the generated config, with the real router
agent beside it: pinning, per-version paths, sticky assignment, shadows, paired capture and
the per-version metrics (issue 16)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from inferops.contract.router import Pairing
from inferops.resources.nginx import VERSION_HEADER, Backend, RateLimit, Routing
from tests.router_support import (
    COUNT_PATH,
    PATH_HEADER,
    UPSTREAM_HEADER,
    Router,
    fire,
    running_router,
    running_upstreams,
    scrape,
)

A, B, Z = "iris:1.0.0", "iris:2.0.0", "iris:3.0.0"


def get(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> Any:
    """(status, headers, body) of one request; HTTP errors are answers too."""
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def seen(address: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{address}{COUNT_PATH}", timeout=5) as r:
        return dict(json.loads(r.read()))


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_a_pin_header_reaches_any_version_even_at_zero_and_refuses_unknown_names() -> None:
    with running_upstreams("one", "two", "dark") as up:
        backends = [
            Backend("one", up["one"], 100, A),
            Backend("two", up["two"], 0, B),
            Backend("dark", up["dark"], 0, Z, shadow_percent=5),
        ]
        with running_router(backends) as router:
            for label, name in ((A, "one"), (B, "two"), (Z, "dark")):
                for _ in range(5):
                    status, headers, body = get(router.url + "/p", {VERSION_HEADER: label})
                    assert (status, body, headers[VERSION_HEADER]) == (200, name, label)
            status, headers, body = get(router.url + "/p", {VERSION_HEADER: "iris:9.9.9"})
            assert status == 400
            assert headers["Content-Type"] == "application/json"
            assert json.loads(body) == {
                "error": "X-Inferops-Version names no version of this service; it has: "
                f"{A}, {B}, {Z}"
            }
            replies, _ = fire(router.url + "/p", 200)
            assert {r.body for r in replies} == {"one"}  # unpinned: the split only


def test_a_custom_pin_header_replaces_the_default() -> None:
    with running_upstreams("one", "two") as up:
        backends = [Backend("one", up["one"], 50, A), Backend("two", up["two"], 50, B)]
        with running_router(backends, routing=Routing(pin_header="X-Model")) as router:
            answers = {get(router.url, {"X-Model": B})[2] for _ in range(20)}
            assert answers == {"two"}
            # The default header means nothing here: such requests are split.
            answers = {get(router.url, {VERSION_HEADER: B})[2] for _ in range(60)}
            assert answers == {"one", "two"}


def test_version_paths_reach_one_version_with_the_prefix_cut_off() -> None:
    with running_upstreams("one", "two") as up:
        backends = [Backend("one", up["one"], 100, A), Backend("two", up["two"], 0, B)]
        with running_router(backends) as router:
            status, headers, body = get(router.url + f"/versions/{B}/predict?x=1")
            assert (status, body, headers[PATH_HEADER]) == (200, "two", "/predict?x=1")
            assert headers[VERSION_HEADER] == B
            status, headers, body = get(router.url + f"/versions/{A}")
            assert (status, body, headers[PATH_HEADER]) == (200, "one", "/")
            status, headers, body = get(router.url + "/versions/iris:9/predict")
            assert status == 404
            assert json.loads(body)["error"] == f"no such version; this service has: {A}, {B}"


def sticky_run(router: Router, keys: int, repeats: int, header: str) -> dict[str, set[str]]:
    """key -> the versions that answered it, asking each key `repeats` times."""
    import asyncio

    import aiohttp

    answered: dict[str, set[str]] = defaultdict(set)

    async def run() -> None:
        connector = aiohttp.TCPConnector(limit=32)
        async with aiohttp.ClientSession(connector=connector) as session:
            queue = [f"user-{k}" for k in range(keys) for _ in range(repeats)]

            async def worker() -> None:
                while queue:
                    key = queue.pop()
                    async with session.get(router.url, headers={header: key}) as r:
                        answered[key].add(await r.text())

            await asyncio.gather(*(worker() for _ in range(32)))

    asyncio.run(run())
    return answered


def test_sticky_by_header_keeps_each_key_on_one_version_and_the_shares_hold() -> None:
    """The issue's measure: 10,000 keys, each asked 5 times."""
    with running_upstreams("one", "two") as up:
        backends = [Backend("one", up["one"], 70, A), Backend("two", up["two"], 30, B)]
        routing = Routing(sticky_header="X-User-Id")
        with running_router(backends, routing=routing, worker_processes="2") as router:
            answered = sticky_run(router, 10_000, 5, "X-User-Id")
            assert len(answered) == 10_000
            assert all(len(v) == 1 for v in answered.values())
            shares = Counter(next(iter(v)) for v in answered.values())
            assert abs(shares["one"] / 10_000 * 100 - 70) <= 2, shares
            # Without the key a request is split at random, not all onto one version.
            replies, _ = fire(router.url, 400)
            assert {r.body for r in replies} == {"one", "two"}


def test_sticky_by_cookie_keeps_each_cookie_on_one_version() -> None:
    with running_upstreams("one", "two") as up:
        backends = [Backend("one", up["one"], 50, A), Backend("two", up["two"], 50, B)]
        with running_router(backends, routing=Routing(sticky_cookie="session")) as router:
            versions: dict[str, set[str]] = defaultdict(set)
            for k in range(200):
                for _ in range(3):
                    cookie = f"theme=dark; session=s{k}"
                    versions[f"s{k}"].add(get(router.url, {"Cookie": cookie})[2])
            assert all(len(v) == 1 for v in versions.values())
            assert {next(iter(v)) for v in versions.values()} == {"one", "two"}


def test_a_shadow_gets_its_sample_and_the_client_only_production_answers() -> None:
    with running_upstreams("one", "slow-shadow") as up:
        backends = [
            Backend("one", up["one"], 100, A),
            Backend("slow-shadow", up["slow-shadow"], 0, Z, shadow_percent=50),
        ]
        with running_router(backends, max_shadow_in_flight=1000) as router:
            replies, _ = fire(router.url + "/predict", 400, concurrency=16, method="POST")
            assert {(r.status, r.body, r.backend) for r in replies} == {(200, "one", A)}
            # Pinned requests are never mirrored.
            for _ in range(20):
                assert get(router.url + "/predict", {VERSION_HEADER: A})[2] == "one"
            eventually(lambda: scrape(router).get(shadow_count(Z), 0) >= 150)
            time.sleep(1.5)  # the last copies are answered after a second
            mirrored = seen(up["slow-shadow"])
            # 50% of 400, +-5 standard deviations (10 requests)
            assert 150 <= mirrored["requests"] <= 250, mirrored
            assert mirrored["last"]["path"] == "/predict"
            assert mirrored["last"]["method"] == "POST"
            metrics = scrape(router)
            assert metrics[shadow_count(Z)] == mirrored["requests"]
            assert metrics[count(A, "split")] == 400
            assert metrics[count(A, "pinned")] == 20


def test_copies_beyond_the_shadow_bound_are_dropped_and_counted() -> None:
    with running_upstreams("one", "slow-shadow") as up:
        backends = [
            Backend("one", up["one"], 100, A),
            Backend("slow-shadow", up["slow-shadow"], 0, Z, shadow_percent=100),
        ]
        with running_router(backends, max_shadow_in_flight=4) as router:
            replies, _ = fire(router.url, 100, concurrency=8)
            assert {(r.status, r.body) for r in replies} == {(200, "one")}
            dropped = f'inferops_router_shadow_dropped_total{{reason="busy",version="{Z}"}}'
            eventually(
                lambda: (
                    scrape(router).get(shadow_count(Z), 0) + scrape(router).get(dropped, 0) == 100
                )
            )
            assert scrape(router)[dropped] > 0


def count(version: str, route: str, code: str = "2xx") -> str:
    return f'inferops_router_requests_total{{code="{code}",route="{route}",version="{version}"}}'


def shadow_count(version: str, code: str = "2xx") -> str:
    return count(version, "shadow", code)


def test_metrics_count_every_request_by_version_route_and_status() -> None:
    with running_upstreams("one", "fail-two") as up:
        backends = [Backend("one", up["one"], 50, A), Backend("fail-two", up["fail-two"], 50, B)]
        with running_router(backends, limit=RateLimit(1000, 1000), agent=True) as router:
            replies, _ = fire(router.url, 300)
            by_status = Counter(r.status for r in replies)
            get(router.url, {VERSION_HEADER: "nope"})
            get(router.url + f"/versions/{A}/x")
            eventually(lambda: scrape(router).get(count(A, "pinned"), 0) == 1)
            metrics = scrape(router)
            assert metrics[count(A, "split")] == by_status[200]
            assert metrics[count(B, "split", "5xx")] == by_status[500]
            assert metrics['inferops_router_refused_total{code="400"}'] == 1
            hist = f'inferops_router_request_duration_seconds_count{{route="split",version="{A}"}}'
            assert metrics[hist] == by_status[200]
            assert metrics["inferops_router_in_flight_requests"] == 0
            assert metrics["inferops_router_invalid_log_lines_total"] == 0


def test_requests_beyond_the_limit_are_counted_as_refused() -> None:
    with running_upstreams("one") as up:
        backends = [Backend("one", up["one"], 100, A)]
        with running_router(backends, limit=RateLimit(1, 5), agent=True) as router:
            replies, _ = fire(router.url, 60, concurrency=8)
            refused = sum(r.status == 429 for r in replies)
            assert refused > 0
            eventually(
                lambda: scrape(router).get('inferops_router_refused_total{code="429"}') == refused
            )


@pytest.mark.parametrize(
    ("shadow", "same_status", "same_body"),
    [("json-b", True, True), ("fail-shadow", False, False), ("plain", True, False)],
)
def test_paired_capture_writes_both_answers_on_one_line(
    tmp_path: Path, shadow: str, same_status: bool, same_body: bool
) -> None:
    output = tmp_path / "collected"
    with running_upstreams("json-a", shadow) as up:
        backends = [
            Backend("json-a", up["json-a"], 100, A),
            Backend(shadow, up[shadow], 0, Z, shadow_percent=100),
        ]
        pairing = Pairing(output=f"file://{output}", redact_headers=("x-secret",))
        with running_router(backends, pairing=pairing) as router:
            headers = {"Content-Type": "application/json", "Authorization": "Bearer t"}
            headers["X-Secret"] = "s"
            for i in range(5):
                status, answer_headers, body = get(
                    router.url + f"/predict?token=abc&i={i}", headers, json.dumps({"i": i}).encode()
                )
                assert (status, json.loads(body)) == (200, {"a": 1, "b": 2})
                assert answer_headers[VERSION_HEADER] == A
                assert UPSTREAM_HEADER in answer_headers
            label = "same" if same_status else "different"
            body_label = "same" if same_body else "different"
            agreement = (
                f'inferops_router_shadow_comparisons_total{{body="{body_label}",'
                f'production="{A}",status="{label}",version="{Z}"}}'
            )
            eventually(lambda: scrape(router).get(agreement) == 5)
        # The agent flushed its lines when it stopped.
        files = sorted(output.rglob("*.jsonl"))
        assert [f.parent.name for f in files] == ["shadow-iris_3.0.0"]
        lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
        assert sorted(line["request"]["body"]["i"] for line in lines) == list(range(5))
        line = lines[0]
        assert line["service"] == "svc"
        assert line["request"]["method"] == "POST"
        assert line["request"]["path"] == "/predict"
        assert "token=[REDACTED]" in line["request"]["query"]
        assert line["request"]["headers"]["authorization"] == "[REDACTED]"
        assert line["request"]["headers"]["x-secret"] == "[REDACTED]"
        assert len(line["requestId"]) == 32
        assert line["production"]["version"] == A
        assert line["production"]["status"] == 200
        assert line["production"]["body"] == {"a": 1, "b": 2}
        assert line["shadow"]["version"] == Z
        assert line["shadow"]["status"] == (200 if same_status else 500)
        assert line["production"]["latencyMs"] > 0 and line["shadow"]["latencyMs"] > 0
        assert (line["sameStatus"], line["sameBody"]) == (same_status, same_body)
        # the shadow saw the request as the client sent it, with the same request id
        last = seen(up[shadow])["last"]
        assert last["path"].startswith("/predict?token=abc")
        assert last["requestId"] in {entry["requestId"] for entry in lines}
