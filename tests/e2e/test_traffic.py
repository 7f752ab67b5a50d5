"""Traffic control on the real node (issue 16): the router pod runs nginx and the router
agent; a request is pinned by header or by path, an unknown pin gets 400; iris 2.0.0 runs as
a shadow of 1.0.0 with data collection on, so every request is answered by 1.0.0 alone while
the agent pairs both answers in object storage; each router pod's metrics count the
requests by version and route."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import realnode
from k8s_helpers import Kubectl, wait_for
from kubernetes import client

from tests.e2e.support import (
    NodeS3,
    Operator,
    apply_examples,
    apply_objects,
    fresh_buckets,
    json_lines,
    wait_phase,
)

pytestmark = pytest.mark.timeout(600)

SERVICE = "iris-shadowed"
COLLECT = "inferops-pairs"
ENDPOINT = "http://minio.storage.svc:9000"
V1, V2 = "iris:1.0.0", "iris:2.0.0"
COMPONENT = "app.kubernetes.io/component"


def service() -> dict[str, Any]:
    return {
        "apiVersion": "serving.inferops.dev/v1alpha1",
        "kind": "RealTimeService",
        "metadata": {"name": SERVICE},
        "spec": {
            "storage": {"endpoint": ENDPOINT, "secretRef": {"name": "object-storage"}},
            "dataCollection": {"enabled": True, "outputPath": f"s3://{COLLECT}/pairs/"},
            "versions": [
                {
                    "application": "iris",
                    "version": "1.0.0",
                    "trafficRatio": 100,
                    "specification": "cpu.2u4g",
                },
                {
                    "application": "iris",
                    "version": "2.0.0",
                    "specification": "cpu.2u4g",
                    "shadow": {"samplePercent": 100},
                },
            ],
        },
    }


def body(i: int) -> bytes:
    row = {"input_1": 4.5 + i / 10, "input_2": 3.0, "input_3": 1.4 + i / 5, "input_4": 0.2}
    return json.dumps({"data": {"req_data": [row]}}).encode()


def call(url: str, data: bytes | None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers.get("X-Inferops-Version"), json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("X-Inferops-Version"), json.loads(exc.read())


def scrape(ip: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{ip}:9090/metrics", timeout=10) as r:
        text = r.read().decode()
    rows = (line.rpartition(" ") for line in text.splitlines() if not line.startswith("#"))
    return {name: float(value) for name, _, value in rows if name}


def total(metrics: list[dict[str, float]], name: str) -> float:
    return sum(m.get(name, 0.0) for m in metrics)


def pairs(s3: Any) -> list[dict[str, Any]]:
    """The router agent's lines; the versions' own agents write beside them, under
    pairs/<service>/<application>_<version>/."""
    lines = json_lines(s3, COLLECT)
    return [dict(record, key=key) for key, _, record in lines if "/shadow-" in key]


def test_pins_shadow_pairs_and_per_version_metrics_on_the_real_node(
    operator: Operator,
    kubectl: Kubectl,
    api_client: Any,
    object_store: NodeS3,
    storage_secret: str,
) -> None:
    ns = operator.apps
    s3 = fresh_buckets(object_store, COLLECT)
    apply_examples(kubectl, ns, "iris-application.yaml")
    apply_objects(kubectl, ns, [service()])
    try:
        wait_phase(api_client, ns, "realtimeservices", SERVICE, ("Running",))
        # Running follows production alone; the shadow has its own condition.
        kubectl(
            "wait", "-n", ns, f"rts/{SERVICE}", "--for=condition=ShadowsReady", "--timeout=180s"
        )
        core = client.CoreV1Api(api_client)
        routers = core.list_namespaced_pod(
            ns, label_selector=f"serving.inferops.dev/owner-name={SERVICE},{COMPONENT}=router"
        ).items
        assert len(routers) == 2
        for pod in routers:
            assert pod.spec.node_name == realnode.NODE_NAME
            assert {c.name: c.ready for c in pod.status.container_statuses} == {
                "nginx": True,
                "agent": True,
            }
        ip = core.read_namespaced_service(SERVICE, ns).spec.cluster_ip
        url = f"http://{ip}/"
        wait_for(lambda: _answers(url), timeout=60, what="kube-proxy on the router pods")

        # Split traffic: answered by production only, whatever the shadow does.
        for i in range(20):
            status, version, answer = call(url, body(i))
            assert (status, version) == (200, V1), answer
            assert answer["resp_data"][0]["predictresult"]
        # Pinned: by header, by path; an unknown pin is refused, never split.
        status, version, _ = call(url, body(0), {"X-Inferops-Version": V2})
        assert (status, version) == (200, V2)
        status, version, _ = call(f"http://{ip}/versions/{V2}/", body(1))
        assert (status, version) == (200, V2)
        status, _, answer = call(url, body(0), {"X-Inferops-Version": "iris:0.0.1"})
        assert status == 400 and "names no version of this service" in answer["error"]

        lines = check_pairs(s3)
        check_metrics(routers, len(lines))
    finally:
        kubectl("delete", "-n", ns, "rts", SERVICE, "--ignore-not-found", "--wait=true")
        kubectl("delete", "-n", ns, "aiapp", "iris", "--ignore-not-found", "--wait=true")


def check_pairs(s3: Any) -> list[dict[str, Any]]:
    # Every split request was paired with the shadow's answer (the agent writes every
    # 10 s); pinned ones were not mirrored.
    deadline = time.monotonic() + 60
    lines: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        lines = pairs(s3)
        if len(lines) >= 20:
            break
        time.sleep(2)
    sent = {json.dumps(json.loads(body(i)), sort_keys=True) for i in range(20)}
    got = {json.dumps(line["request"]["body"], sort_keys=True) for line in lines}
    assert sent <= got, sorted(sent - got)
    for line in lines:
        assert (line["production"]["version"], line["shadow"]["version"]) == (V1, V2)
        assert line["production"]["status"] == line["shadow"]["status"] == 200
        assert line["sameStatus"] is True
        assert line["key"].startswith(f"pairs/{SERVICE}/shadow-iris_2.0.0/{SERVICE}-router-")
    return lines


def check_metrics(routers: list[Any], pair_count: int) -> None:
    # The metrics of both router pods, scraped on each pod's own address.
    def read() -> list[dict[str, float]]:
        return [scrape(p.status.pod_ip) for p in routers]

    split = f'inferops_router_requests_total{{code="2xx",route="split",version="{V1}"}}'
    shadow = f'inferops_router_requests_total{{code="2xx",route="shadow",version="{V2}"}}'
    pinned = f'inferops_router_requests_total{{code="2xx",route="pinned",version="{V2}"}}'
    wait_for(lambda: total(read(), shadow) >= 20, timeout=30, what="shadow answers counted")
    metrics = read()
    assert total(metrics, split) >= 20  # plus the readiness check's requests
    assert total(metrics, split) == total(metrics, shadow)
    assert total(metrics, pinned) == 2
    assert total(metrics, 'inferops_router_refused_total{code="400"}') == 1
    compared = sum(
        v
        for m in metrics
        for k, v in m.items()
        if k.startswith("inferops_router_shadow_comparisons_total{") and 'status="same"' in k
    )
    assert compared == total(metrics, shadow)
    print(f"{pair_count} pairs; split {total(metrics, split)}, shadow {total(metrics, shadow)}")


def _answers(url: str) -> bool:
    try:
        return bool(call(url, body(0))[0] == 200)
    except OSError:
        return False
