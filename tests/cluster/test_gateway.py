"""gateway-api mode on the real API server, with the Gateway API's own HTTPRoute CRD.

The CRD (standard channel, pinned in build.sh) carries the Gateway API's schema and CEL
rules, so the API server itself checks every route the operator writes: weights, the path
match, the URL rewrite. No Gateway implementation runs here; what a Gateway would do with
the route is Gateway API conformance, not ours. The first test starts before the CRD is
installed: a cluster without the Gateway API is what a user meets first.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_helpers import Kubectl, printed, read_crd, wait_established, wait_for
from kubernetes import client

from inferops.api.catalog import default_catalog
from tests.cluster.controlplane import BUILD_SH
from tests.cluster.operator_process import Operator, running_operator
from tests.cluster.test_realtime import Cluster
from tests.unit.rules_table import app, rts, version

ROUTE_CRD = "httproutes.gateway.networking.k8s.io"
GATEWAY_URL = "https://models.example.test"


def route_crd_file() -> Path:
    """The pinned HTTPRoute CRD, fetched by build.sh (a no-op when it is there)."""
    subprocess.run(["bash", str(BUILD_SH), "kubectl"], check=True, stdout=subprocess.DEVNULL)
    path = subprocess.run(
        ["bash", str(BUILD_SH), "--print-gateway-crd"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return Path(path)


class RouteCrd:
    """The HTTPRoute CRD: installed on demand (the first test starts without it), and
    removed after the module when this module installed it."""

    def __init__(self, kubectl: Kubectl, api_client: Any) -> None:
        self.kubectl = kubectl
        self.api = api_client
        self.preinstalled = read_crd(api_client, ROUTE_CRD) is not None
        self.installed = False

    def install(self) -> None:
        if self.preinstalled or self.installed:
            return
        path = route_crd_file()
        self.kubectl("apply", "--server-side", "--field-manager=inferops-tests", "-f", str(path))
        wait_established(self.kubectl, path)
        self.installed = True


@pytest.fixture(scope="module")
def route_crd(kubectl: Kubectl, api_client: Any, control_plane: Any) -> Iterator[RouteCrd]:
    crd = RouteCrd(kubectl, api_client)
    yield crd
    if crd.installed:
        client.ApiextensionsV1Api(api_client).delete_custom_resource_definition(ROUTE_CRD)
        if control_plane is None:  # a real cluster: leave it as it was
            wait_for(
                lambda: read_crd(api_client, ROUTE_CRD) is None,
                timeout=180,
                what=f"{ROUTE_CRD} deleted",
            )


@pytest.fixture
def operator(
    kubeconfig: Path, namespace: str, kwok_nodes: list[str], route_crd: RouteCrd, tmp_path: Path
) -> Iterator[Operator]:
    document = default_catalog().model_dump(mode="json", by_alias=True, exclude_none=True)
    document["router"] = {
        "mode": "gateway-api",
        "gateway": {"name": "web", "namespace": "gateways", "url": GATEWAY_URL},
    }
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(document))
    with running_operator(kubeconfig, [namespace], ["--catalog", str(catalog)]) as running:
        yield running


def routes(api_client: Any, namespace: str) -> dict[str, Any]:
    items = client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes"
    )["items"]
    return {r["metadata"]["name"]: r for r in items}


def backends(route: dict[str, Any]) -> list[tuple[str, int]]:
    rule = route["spec"]["rules"][0]  # the split; then one per version, then unknown pins
    return [(b["name"], b["weight"]) for b in rule["backendRefs"]]


@pytest.fixture
def cluster(api_client: Any, namespace: str) -> Cluster:
    return Cluster(api_client, namespace)


def test_without_the_gateway_api_the_service_waits_for_it(
    cluster: Cluster, operator: Operator, route_crd: RouteCrd, api_client: Any, kubectl: Kubectl
) -> None:
    """Runs first in this module: the cluster has no HTTPRoute yet. The service is Failed
    with a reason and applies nothing, then recovers on its own once the CRD is there."""
    if route_crd.preinstalled:
        pytest.skip("this cluster has the Gateway API already")
    cluster.create(app("iris"))
    cluster.create(rts(version("1.0.0", 100)))
    status = cluster.phase("Failed")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "RouterUnavailable"
    assert "does not serve gateway.networking.k8s.io/v1 HTTPRoute" in status["message"]
    shown = printed(kubectl, cluster.ns, "rts", "svc")
    assert (shown["PHASE"], shown["REASON"]) == ("Failed", "RouterUnavailable")
    assert cluster.deployments() == {}  # no models that no route could reach
    route_crd.install()
    status = cluster.phase("Running", timeout=120)  # the 30 s retry timer, on a busy machine
    assert status["url"] == f"{GATEWAY_URL}/{cluster.ns}/svc"
    assert sorted(routes(api_client, cluster.ns)) == ["svc", "svc-versions"]


def test_routes_are_accepted_weighted_and_follow_the_spec(
    cluster: Cluster, operator: Operator, route_crd: RouteCrd, api_client: Any
) -> None:
    route_crd.install()
    ns = cluster.ns
    cluster.create(app("iris"))
    cluster.create(rts(version("1.0.0", 70, computeNodes=2), version("2.0.0", 30)))
    cluster.create(rts(version("1.0.0", 100), name="other"))
    status = cluster.phase("Running")
    assert status["url"] == f"{GATEWAY_URL}/{ns}/svc"
    assert cluster.phase("Running", name="other")["url"] == f"{GATEWAY_URL}/{ns}/other"
    assert not any(d.endswith("-router") for d in cluster.deployments())  # no nginx

    found = routes(api_client, ns)
    assert sorted(found) == ["other", "other-versions", "svc", "svc-versions"]
    route = found["svc"]
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "web",
            "namespace": "gateways",
        }
    ]  # the API server's defaults filled in
    rule, *pins, unknown = route["spec"]["rules"]
    assert len(pins) == 2 and "backendRefs" not in unknown
    assert pins[1]["matches"][0]["headers"][0]["value"] == "iris:2.0.0"
    paths = found["svc-versions"]["spec"]["rules"]
    assert paths[1]["matches"][0]["path"]["value"] == f"/{ns}/svc/versions/iris:2.0.0"
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": f"/{ns}/svc"}}]
    assert rule["filters"] == [
        {
            "type": "URLRewrite",
            "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
        }
    ]
    names = [name for name, _ in backends(route)]
    assert [w for _, w in backends(route)] == [70, 30]
    assert all(cluster.core.read_namespaced_service(n, ns) for n in names)

    # A ratio change rewrites the weights; a removed version leaves the route.
    cluster.patch_spec({"versions": [version("1.0.0", 20, computeNodes=2), version("2.0.0", 80)]})
    cluster.phase("Running")
    wait_for(
        lambda: [w for _, w in backends(routes(api_client, ns)["svc"])] == [20, 80],
        timeout=30,
        what="weights 20/80",
    )
    cluster.patch_spec({"versions": [version("2.0.0", 100)]})
    cluster.phase("Running")
    wait_for(
        lambda: backends(routes(api_client, ns)["svc"]) == [(names[1], 100)],
        timeout=30,
        what="the removed version's backend gone",
    )


def test_traffic_limit_fails_in_gateway_mode(
    cluster: Cluster, operator: Operator, route_crd: RouteCrd, api_client: Any
) -> None:
    route_crd.install()
    cluster.create(app("iris"))
    cluster.create(rts(trafficLimit={"requestsPerSecond": 10}))
    status = cluster.phase("Failed")
    assert "spec.trafficLimit: not supported with the gateway-api router" in status["message"]
    assert routes(api_client, cluster.ns) == {}


def test_a_shadow_is_a_mirror_and_stickiness_is_refused_in_gateway_mode(
    cluster: Cluster, operator: Operator, route_crd: RouteCrd, api_client: Any
) -> None:
    """The API server accepts the RequestMirror with its percent (the Gateway API's own
    schema and CEL rules); what an HTTPRoute cannot do is refused with the field named."""
    route_crd.install()
    cluster.create(app("iris"))
    shadow = version("2.0.0", 0, shadow={"samplePercent": 20})
    cluster.create(rts(version("1.0.0", 100), shadow))
    cluster.phase("Running")
    split = routes(api_client, cluster.ns)["svc"]["spec"]["rules"][0]
    [mirror] = [f for f in split["filters"] if f["type"] == "RequestMirror"]
    assert mirror["requestMirror"]["percent"] == 20
    assert [b["weight"] for b in split["backendRefs"]] == [100]
    cluster.create(rts(routing={"stickyBy": {"header": "X-User"}}, name="sticky"))
    status = cluster.phase("Failed", name="sticky")
    assert "spec.routing.stickyBy: not supported with the gateway-api router" in status["message"]
