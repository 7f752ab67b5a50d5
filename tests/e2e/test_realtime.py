"""The iris application and the 70/30 RealTimeService of examples/, as a user applies them:
every pod real, predictions through the stable Service, the measured split, a ratio change
that restarts no model pod, the traffic limit, stop and start."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import realnode
from k8s_helpers import Kubectl, wait_for
from kubernetes import client

from inferops.resources.naming import child_name
from tests.e2e.support import REPO, Operator, apply_examples, custom_object, wait_phase

pytestmark = pytest.mark.timeout(900)

EXAMPLES = REPO / "examples"
SERVICE = "iris-online"
VERSION_HEADER = "X-Inferops-Version"
# what the router's X-Inferops-Version header says: the version, never its Service's name
V1, V2 = "iris:1.0.0", "iris:2.0.0"
SERVICE_NAMES = (child_name(SERVICE, "iris", "1.0.0"), child_name(SERVICE, "iris", "2.0.0"))
COMPONENT = "app.kubernetes.io/component"
IRIS_REQUEST = json.dumps(
    {
        "data": {
            "req_data": [
                {"input_1": 5.1, "input_2": 3.5, "input_3": 1.4, "input_4": 0.2},
                {"input_1": 6.7, "input_2": 3.0, "input_3": 5.2, "input_4": 2.3},
            ]
        }
    }
).encode()
SPECIES = ["setosa", "virginica"]


@dataclass
class Tally:
    backends: Counter[str] = field(default_factory=Counter)
    codes: Counter[int] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)

    def share(self, backend: str) -> float:
        return 100.0 * self.backends[backend] / max(sum(self.backends.values()), 1)


def post(conn: http.client.HTTPConnection, tally: Tally) -> None:
    conn.request("POST", "/", body=IRIS_REQUEST, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    body = response.read()
    tally.codes[response.status] += 1
    if response.status != 200:
        return
    predictions = [r["predictresult"] for r in json.loads(body)["resp_data"]]
    if predictions != SPECIES:
        tally.wrong.append(body.decode(errors="replace")[:200])
    tally.backends[response.getheader(VERSION_HEADER, "")] += 1
    headers = str(response.getheaders())
    if any(name in headers for name in SERVICE_NAMES):
        tally.wrong.append(f"an internal Service name in the answer's headers: {headers}")


def measure(host: str, successes: int, rate: float, connections: int = 8) -> Tally:
    """Sends iris requests at about `rate` per second over several keep-alive connections
    (kube-proxy spreads connections over the router pods) until `successes` answered 200.
    Requests refused by the traffic limit (429) are counted and not part of the split."""
    tally = Tally()
    conns = [http.client.HTTPConnection(host, 80, timeout=30) for _ in range(connections)]
    interval = 1.0 / rate
    start = time.monotonic()
    sent = 0
    try:
        while tally.codes[200] < successes and sent < successes * 3:
            post(conns[sent % connections], tally)
            sent += 1
            delay = start + sent * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    finally:
        for conn in conns:
            conn.close()
    return tally


def answers_on_fresh_connections(host: str, connections: int = 16) -> bool:
    """kube-proxy follows an endpoint change a moment after the pods do: until then a new
    connection may still be sent to a router pod that is gone."""
    for _ in range(connections):
        conn = http.client.HTTPConnection(host, 80, timeout=2)
        tally = Tally()
        try:
            post(conn, tally)
        except OSError:
            return False
        finally:
            conn.close()
        if tally.codes[200] + tally.codes[429] != 1:
            return False
    return True


def burst(host: str, requests: int, threads: int = 8) -> Tally:
    """As fast as the client goes: beyond the service's trafficLimit."""
    tally = Tally()
    lock = threading.Lock()

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection(host, 80, timeout=30)
        local = Tally()
        try:
            for _ in range(n):
                post(conn, local)
        finally:
            conn.close()
        with lock:
            tally.codes.update(local.codes)
            tally.backends.update(local.backends)
            tally.wrong += local.wrong

    pool = [threading.Thread(target=worker, args=(requests // threads,)) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return tally


def pods(api: Any, namespace: str) -> list[Any]:
    selector = f"serving.inferops.dev/owner-name={SERVICE}"
    return list(client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items)


def model_pods(api: Any, namespace: str) -> dict[str, tuple[str, int]]:
    """Model pods (not the router's) by name: their UID and restart count."""
    return {
        p.metadata.name: (
            p.metadata.uid,
            sum(c.restart_count for c in p.status.container_statuses or []),
        )
        for p in pods(api, namespace)
        if p.metadata.labels.get(COMPONENT) != "router"
    }


def patch_spec(api: Any, namespace: str, spec: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        "serving.inferops.dev", "v1alpha1", namespace, "realtimeservices", SERVICE, {"spec": spec}
    )


def wait_service(api: Any, namespace: str, phase: str) -> dict[str, Any]:
    return wait_phase(api, namespace, "realtimeservices", SERVICE, (phase,))


def router_settled(api: Any, namespace: str) -> bool:
    """Every router pod runs the current config (a ratio change rolls them)."""
    core = client.CoreV1Api(api)
    cm = core.read_namespaced_config_map(f"{SERVICE}-router", namespace)
    routers = [p for p in pods(api, namespace) if p.metadata.labels.get(COMPONENT) == "router"]
    apps = client.AppsV1Api(api)
    deployment = apps.read_namespaced_deployment(f"{SERVICE}-router", namespace)
    want = deployment.spec.template.metadata.annotations["serving.inferops.dev/config-hash"]
    return (
        bool(cm.data)
        and len(routers) == deployment.spec.replicas
        and all(
            p.metadata.annotations.get("serving.inferops.dev/config-hash") == want
            and p.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            for p in routers
        )
    )


@pytest.fixture(scope="module")
def iris_online(operator: Operator, kubectl: Kubectl, api_client: Any) -> Iterator[str]:
    ns = operator.apps
    apply_examples(kubectl, ns, "iris-application.yaml", "iris-realtime.yaml")
    try:
        wait_service(api_client, ns, "Running")
        service = client.CoreV1Api(api_client).read_namespaced_service(SERVICE, ns)
        wait_for(
            lambda: answers_on_fresh_connections(service.spec.cluster_ip),
            timeout=60,
            what="kube-proxy on the router pods",
        )
        yield service.spec.cluster_ip
    finally:
        kubectl("delete", "-n", ns, "rts", SERVICE, "--ignore-not-found", "--wait=true")
        kubectl("delete", "-n", ns, "aiapp", "iris", "--ignore-not-found", "--wait=true")
        wait_for(lambda: not pods(api_client, ns), timeout=120, what="iris-online's pods gone")


def test_every_pod_runs_on_the_real_node(
    iris_online: str, operator: Operator, api_client: Any
) -> None:
    running = pods(api_client, operator.apps)
    routers = [p for p in running if p.metadata.labels.get(COMPONENT) == "router"]
    assert len(running) == 5 and len(routers) == 2, [p.metadata.name for p in running]
    for pod in running:
        assert pod.spec.node_name == realnode.NODE_NAME
        assert pod.status.phase == "Running"
        for c in pod.status.container_statuses:
            assert c.ready and c.container_id.startswith("containerd://"), c


TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def test_no_pod_holds_a_token_and_network_policies_guard_the_models(
    iris_online: str, operator: Operator, api_client: Any, kubectl: Kubectl
) -> None:
    """No child pod gets a ServiceAccount token (none calls the API), checked inside the
    running containers; the NetworkPolicies exist and select the pods. The node's network
    (the CNI bridge plugin) does not enforce NetworkPolicies, so traffic is not tested."""
    ns = operator.apps
    running = pods(api_client, ns)
    for pod in running:
        assert pod.spec.automount_service_account_token is False, pod.metadata.name
        mounts = [m.mount_path for c in pod.spec.containers for m in c.volume_mounts or []]
        assert not any(m.startswith("/var/run/secrets/kubernetes.io") for m in mounts), mounts
    model = next(p for p in running if p.metadata.labels.get(COMPONENT) == "model")
    router = next(p for p in running if p.metadata.labels.get(COMPONENT) == "router")
    probe = f"import os; print(os.path.exists({TOKEN_DIR!r}))"
    out = kubectl(
        "exec", "-n", ns, model.metadata.name, "-c", "model", "--", "python3", "-c", probe
    )
    assert out.strip() == "False", out
    check = f"test -e {TOKEN_DIR} && echo mounted || echo none"
    out = kubectl("exec", "-n", ns, router.metadata.name, "--", "sh", "-c", check)
    assert out.strip() == "none", out
    selector = f"serving.inferops.dev/owner-name={SERVICE}"
    policies = {
        p.metadata.name: p.spec
        for p in client.NetworkingV1Api(api_client)
        .list_namespaced_network_policy(ns, label_selector=selector)
        .items
    }
    assert set(policies) == {f"{SERVICE}-models", f"{SERVICE}-router"}, set(policies)
    models = policies[f"{SERVICE}-models"]
    assert models.pod_selector.match_labels.items() <= model.metadata.labels.items()
    [rule] = models.ingress
    assert rule._from[0].pod_selector.match_labels.items() <= router.metadata.labels.items()
    assert [(p.port, p.protocol) for p in rule.ports] == [("http", "TCP")]
    routers = policies[f"{SERVICE}-router"]
    assert routers.pod_selector.match_labels.items() <= router.metadata.labels.items()


def test_70_30_split_with_real_predictions(iris_online: str) -> None:
    tally = measure(iris_online, 2000, rate=60)
    assert not tally.wrong, tally.wrong[:3]
    assert tally.codes[200] == 2000 and set(tally.codes) <= {200, 429}, tally.codes
    assert abs(tally.share(V1) - 70) <= 3 and abs(tally.share(V2) - 30) <= 3, tally.backends
    print(f"70/30: {dict(tally.backends)} codes {dict(tally.codes)}")


def test_50_50_changes_the_split_and_restarts_no_model_pod(
    iris_online: str, operator: Operator, api_client: Any
) -> None:
    ns = operator.apps
    before = model_pods(api_client, ns)
    assert len(before) == 3 and all(restarts == 0 for _, restarts in before.values())
    rts = custom_object(api_client, ns, "realtimeservices", SERVICE)
    versions = rts["spec"]["versions"]
    versions[0]["trafficRatio"], versions[1]["trafficRatio"] = 50, 50
    patch_spec(api_client, ns, {"versions": versions})
    wait_service(api_client, ns, "Running")
    wait_for(lambda: router_settled(api_client, ns), timeout=180, what="router rolled")
    wait_for(
        lambda: answers_on_fresh_connections(iris_online),
        timeout=60,
        what="kube-proxy on the new router pods",
    )
    tally = measure(iris_online, 2000, rate=60)
    assert not tally.wrong and tally.codes[200] == 2000, (tally.codes, tally.wrong[:3])
    assert abs(tally.share(V1) - 50) <= 3 and abs(tally.share(V2) - 50) <= 3, tally.backends
    after = model_pods(api_client, ns)
    assert after == before, (before, after)  # same pods (UIDs), zero restarts
    print(f"50/50: {dict(tally.backends)}; model pods {sorted(after.values())}")


def test_traffic_limit_answers_429_beyond_the_limit(iris_online: str) -> None:
    tally = burst(iris_online, 800)
    assert tally.codes[429] > 0, tally.codes
    assert set(tally.codes) == {200, 429}, tally.codes
    assert not tally.wrong
    print(f"burst of 800: {dict(tally.codes)}")


def test_stop_removes_the_pods_and_start_brings_them_back(
    iris_online: str, operator: Operator, api_client: Any
) -> None:
    ns = operator.apps
    patch_spec(api_client, ns, {"stopped": True})
    wait_service(api_client, ns, "Stopped")
    wait_for(lambda: not pods(api_client, ns), timeout=120, what="no pods while stopped")
    patch_spec(api_client, ns, {"stopped": False})
    wait_service(api_client, ns, "Running")
    wait_for(
        lambda: answers_on_fresh_connections(iris_online),
        timeout=60,
        what="kube-proxy on the started pods",
    )
    tally = measure(iris_online, 50, rate=20)
    assert tally.codes[200] == 50 and not tally.wrong
