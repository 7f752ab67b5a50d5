"""RealTimeService builders: a table over every spec feature, outputs checked against
Kubernetes' own schemas (kubernetes-validate, offline)."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from inferops.api.application import AIApplicationSpec
from inferops.api.catalog import GatewayRef, RouterConfig, default_catalog
from inferops.api.realtime import RealTimeServiceSpec
from inferops.contract.router import RouterAgentConfig
from inferops.resources.realtime import CONFIG_HASH, Inputs, realtime_children, service_url
from inferops.validation.document import ValidationContext, validate_object
from tests.unit.rules_table import app, echo_rts, multipool, rts, version

K8S = "1.37.0"
APPS = {
    name: AIApplicationSpec.model_validate(app(name, websocket=name == "echo")["spec"])
    for name in ("iris", "echo")
}


def inputs(obj: dict[str, Any], catalog: Any = None) -> Inputs:
    obj = copy.deepcopy(obj)
    obj["metadata"].setdefault("namespace", "ns")
    obj["metadata"]["uid"] = "1234"
    spec = RealTimeServiceSpec.model_validate(obj["spec"])
    versions = {(a, v.version): v for a, s in APPS.items() for v in s.versions}
    return Inputs(obj, spec, versions, catalog or default_catalog())


def of_kind(children: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [c for c in children if c["kind"] == kind]


def model_deployments(children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d
        for d in of_kind(children, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "model"
    ]


CASES = {
    "two-versions": rts(),
    "single": rts(version("1.0.0", 100, computeNodes=3)),
    "zero-ratio": rts(version("1.0.0", 100), version("2.0.0", 0)),
    "multipool": multipool(4, 2),
    "dedicated": rts(resourcePool="pool-a"),
    "websocket": echo_rts(True),
    "limit": rts(trafficLimit={"requestsPerSecond": 50, "burst": 10}),
    "stopped": rts(stopped=True),
    "gpu": rts(version("1.0.0", 100, specification="gpu.1x"), resourcePool="pool-b"),
    "shadow": rts(version("1.0.0", 100), version("2.0.0", 0, shadow={"samplePercent": 10})),
    "shadow-paired": rts(
        version("1.0.0", 100),
        version("2.0.0", 0, shadow={"samplePercent": 10}),
        dataCollection={"enabled": True, "outputPath": "s3://bucket/dc/", "sampleRatio": 0.5},
        storage={"endpoint": "http://minio:9000", "secretRef": {"name": "s3"}},
    ),
    "sticky": rts(routing={"pinHeader": "X-Model", "stickyBy": {"cookie": "session"}}),
    "env": rts(
        version(
            "1.0.0",
            100,
            env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        )
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_children_pass_kubernetes_schemas(case: str) -> None:
    for child in realtime_children(inputs(CASES[case])):
        kubernetes_validate.validate(child, K8S, strict=True)


@pytest.mark.parametrize("case", CASES)
def test_every_child_is_labelled_owned_and_restricted(case: str) -> None:
    for child in realtime_children(inputs(CASES[case])):
        meta = child["metadata"]
        assert meta["namespace"] == "ns"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "inferops"
        assert meta["labels"]["serving.inferops.dev/owner-kind"] == "RealTimeService"
        assert meta["labels"]["serving.inferops.dev/owner-name"] == "svc"
        assert meta["ownerReferences"][0]["uid"] == "1234"
        assert meta["ownerReferences"][0]["controller"] is True
        assert len(meta["name"]) <= 63
        if child["kind"] == "Deployment":
            pod = child["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            for container in pod["containers"] + pod.get("initContainers", []):
                ctx = container["securityContext"]
                assert ctx["allowPrivilegeEscalation"] is False
                assert ctx["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize(
    ("case", "replicas", "router"),
    [
        ("two-versions", [1, 1], 2),
        ("single", [3], 2),
        ("multipool", [2, 2, 1, 1], 2),
        ("stopped", [0, 0], 0),
    ],
)
def test_replicas(case: str, replicas: list[int], router: int) -> None:
    children = realtime_children(inputs(CASES[case]))
    assert [d["spec"]["replicas"] for d in model_deployments(children)] == replicas
    routers = [d for d in of_kind(children, "Deployment") if d not in model_deployments(children)]
    assert [d["spec"]["replicas"] for d in routers] == [router]


def test_multipool_pins_each_half_to_its_pool() -> None:
    deployments = model_deployments(realtime_children(inputs(CASES["multipool"])))
    pools = [d["spec"]["template"]["spec"]["nodeSelector"] for d in deployments]
    assert pools == [{"serving.inferops.dev/pool": p} for p in ("pool-a", "pool-b") * 2]
    # One Service per version selects the pods of both pools.
    services = [
        s
        for s in of_kind(realtime_children(inputs(CASES["multipool"])), "Service")
        if "serving.inferops.dev/version" in s["spec"]["selector"]
    ]
    assert all("serving.inferops.dev/pool" not in s["spec"]["selector"] for s in services)


def test_flavor_resources_probes_and_deadline() -> None:
    deployment = model_deployments(realtime_children(inputs(CASES["gpu"])))[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert deployment["spec"]["progressDeadlineSeconds"] == 20 * 60
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 20 * 60
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {
        "serving.inferops.dev/pool": "pool-b"
    }


def test_env_keeps_secret_references() -> None:
    container = model_deployments(realtime_children(inputs(CASES["env"])))[0]["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}} in container[
        "env"
    ]


def router_conf(case: str) -> str:
    config_map = of_kind(realtime_children(inputs(CASES[case])), "ConfigMap")[0]
    return str(config_map["data"]["nginx.conf"])


def test_router_config_weights_websocket_and_limit() -> None:
    assert "70% svc-iris-1-0-0-" in router_conf("two-versions")
    assert "30% svc-iris-2-0-0-" in router_conf("two-versions")
    zero = router_conf("zero-ratio")
    assert "100% svc-iris-1-0-0-" in zero and " 0% " not in zero
    assert "proxy_set_header Upgrade $http_upgrade;" in router_conf("websocket")
    assert "Upgrade" not in router_conf("two-versions")
    limited = router_conf("limit")
    assert "rate=1500r/m" in limited  # 50 r/s shared by two router replicas
    assert "limit_req zone=service burst=5 nodelay;" in limited  # burst 10 shared by two
    assert "limit_req" not in router_conf("two-versions")


def test_ratio_change_touches_only_the_router() -> None:
    before = realtime_children(inputs(rts(version("1.0.0", 70), version("2.0.0", 30))))
    after = realtime_children(inputs(rts(version("1.0.0", 10), version("2.0.0", 90))))
    changed = [
        b["kind"] + "/" + b["metadata"]["name"]
        for b, a in zip(before, after, strict=True)
        if b != a
    ]
    assert changed == ["ConfigMap/svc-router", "Deployment/svc-router"]
    router_before = of_kind(before, "Deployment")[-1]["spec"]["template"]["metadata"]
    router_after = of_kind(after, "Deployment")[-1]["spec"]["template"]["metadata"]
    assert router_before["annotations"][CONFIG_HASH] != router_after["annotations"][CONFIG_HASH]


def gateway_catalog(url: str | None = None) -> Any:
    return default_catalog().model_copy(
        update={
            "router": RouterConfig(
                mode="gateway-api", gateway=GatewayRef(name="gw", namespace="infra", url=url)
            )
        }
    )


def test_gateway_api_mode_builds_an_httproute_instead_of_nginx() -> None:
    children = realtime_children(inputs(CASES["two-versions"], gateway_catalog()))
    assert not of_kind(children, "ConfigMap")
    assert [c["kind"] for c in children].count("Deployment") == 2  # the models, no router
    route = of_kind(children, "HTTPRoute")[0]
    assert route["spec"]["parentRefs"] == [{"name": "gw", "namespace": "infra"}]
    split, pin_a, pin_b, unknown = route["spec"]["rules"]
    assert [b["weight"] for b in split["backendRefs"]] == [70, 30]
    assert [b["filters"][0]["responseHeaderModifier"]["set"] for b in split["backendRefs"]] == [
        [{"name": "X-Inferops-Version", "value": "iris:1.0.0"}],
        [{"name": "X-Inferops-Version", "value": "iris:2.0.0"}],
    ]
    # Pinning: the header's exact value, or the version's path (a route of its own).
    assert pin_a["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/ns/svc"},
            "headers": [{"type": "Exact", "name": "X-Inferops-Version", "value": "iris:1.0.0"}],
        }
    ]
    paths = of_kind(children, "HTTPRoute")[1]
    assert paths["metadata"]["name"] == "svc-versions"
    assert [r["matches"] for r in paths["spec"]["rules"]] == [
        [{"path": {"type": "PathPrefix", "value": "/ns/svc/versions/iris:1.0.0"}}],
        [{"path": {"type": "PathPrefix", "value": "/ns/svc/versions/iris:2.0.0"}}],
    ]
    assert [r["backendRefs"] for r in paths["spec"]["rules"]] == [
        pin_a["backendRefs"],
        pin_b["backendRefs"],
    ]
    assert [b["name"] for b in pin_b["backendRefs"]] == [split["backendRefs"][1]["name"]]
    assert "weight" not in pin_b["backendRefs"][0]
    # Any other value of the pin header: a rule without backends, which a Gateway answers 404.
    assert unknown == {
        "matches": [
            {
                "path": {"type": "PathPrefix", "value": "/ns/svc"},
                "headers": [
                    {"type": "RegularExpression", "name": "X-Inferops-Version", "value": ".*"}
                ],
            }
        ]
    }


def test_gateway_api_mode_mirrors_to_shadows_with_their_percent() -> None:
    obj = copy.deepcopy(CASES["two-versions"])
    obj["spec"]["versions"][0]["trafficRatio"] = 100
    obj["spec"]["versions"][1] |= {"trafficRatio": 0, "shadow": {"samplePercent": 25}}
    route, _ = of_kind(realtime_children(inputs(obj, gateway_catalog())), "HTTPRoute")
    split, pin_a, pin_b, _ = route["spec"]["rules"]
    # the shadow takes no share
    assert [b["name"] for b in split["backendRefs"]] == [pin_a["backendRefs"][0]["name"]]
    assert split["filters"][1] == {
        "type": "RequestMirror",
        "requestMirror": {
            "backendRef": {"name": pin_b["backendRefs"][0]["name"], "port": 8080},
            "percent": 25,
        },
    }


def test_gateway_routes_of_two_services_never_overlap() -> None:
    """Each service is served under /<namespace>/<name> on the shared Gateway, and the
    prefix is cut off before the model sees the request."""
    prefixes = []
    for name, namespace in [("iris", "team-a"), ("iris", "team-b"), ("other", "team-a")]:
        obj = copy.deepcopy(CASES["two-versions"])
        obj["metadata"] |= {"name": name, "namespace": namespace}
        route, _ = of_kind(realtime_children(inputs(obj, gateway_catalog())), "HTTPRoute")
        rule = route["spec"]["rules"][0]
        assert rule["matches"] == [
            {"path": {"type": "PathPrefix", "value": f"/{namespace}/{name}"}}
        ]
        assert rule["filters"] == [
            {
                "type": "URLRewrite",
                "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
            }
        ]
        prefixes.append(rule["matches"][0]["path"]["value"])
    assert len(set(prefixes)) == 3


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (None, None),
        ("https://models.example.com", "https://models.example.com/default/iris-svc"),
        ("http://10.0.0.7:8080/", "http://10.0.0.7:8080/default/iris-svc"),
    ],
)
def test_gateway_mode_status_url(url: str | None, expected: str | None) -> None:
    obj = copy.deepcopy(CASES["two-versions"])
    obj["metadata"] |= {"name": "iris-svc", "namespace": "default"}
    assert service_url(inputs(obj, gateway_catalog(url))) == expected


def test_nginx_mode_status_url_is_the_stable_service() -> None:
    obj = copy.deepcopy(CASES["two-versions"])
    obj["metadata"] |= {"name": "iris-svc", "namespace": "ml"}
    assert service_url(inputs(obj)) == "http://iris-svc.ml.svc.cluster.local"


def test_model_uri_adds_a_fetch_init_container() -> None:
    spec = copy.deepcopy(app()["spec"])
    spec["versions"][0]["modelUri"] = "s3://models/iris/"
    APPS["iris"] = AIApplicationSpec.model_validate(spec)
    try:
        obj = rts(
            version("1.0.0", 100),
            storage={"endpoint": "http://s3.local:9000", "secretRef": {"name": "creds"}},
        )
        pod = model_deployments(realtime_children(inputs(obj)))[0]["spec"]["template"]["spec"]
        init = pod["initContainers"][0]
        assert init["args"] == ["fetch-model", "s3://models/iris/", "--dest", "/mnt/models"]
        names = {e["name"]: e for e in init["env"]}
        assert names["INFEROPS_S3_ENDPOINT"]["value"] == "http://s3.local:9000"
        assert names["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "creds"
        assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/mnt/models"
        kubernetes_validate.validate(
            model_deployments(realtime_children(inputs(obj)))[0], K8S, strict=True
        )
    finally:
        APPS["iris"] = AIApplicationSpec.model_validate(app()["spec"])


def test_names_stay_valid_for_long_inputs() -> None:
    obj = rts(version("1.0.0", 100), name="s" * 56)
    for child in realtime_children(inputs(obj)):
        assert len(child["metadata"]["name"]) <= 63


def test_data_collection_puts_the_agent_in_front_of_the_model() -> None:
    obj = rts(
        version("1.0.0", 100),
        dataCollection={
            "enabled": True,
            "sampleRatio": 0.25,
            "outputPath": "s3://bucket/collected/",
        },
        storage={"endpoint": "http://s3.local:9000", "secretRef": {"name": "creds"}},
    )
    children = realtime_children(inputs(obj))
    deployment = model_deployments(children)[0]
    kubernetes_validate.validate(deployment, K8S, strict=True)
    model, agent = deployment["spec"]["template"]["spec"]["containers"]
    assert model["ports"][0]["name"] == "model"
    assert model["readinessProbe"]["httpGet"]["port"] == "model"
    assert agent["ports"] == [{"name": "http", "containerPort": 8081, "protocol": "TCP"}]
    args = agent["args"]
    assert args[0] == "agent"
    assert args[args.index("--upstream") + 1] == "http://127.0.0.1:8080"
    assert args[args.index("--output") + 1] == "s3://bucket/collected/"
    assert args[args.index("--sample-ratio") + 1] == "0.25"
    env = {e["name"]: e for e in agent["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "creds"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # The version's Service targets "http": the agent when collecting, else the model.
    service = next(
        s
        for s in of_kind(children, "Service")
        if "serving.inferops.dev/version" in s["spec"]["selector"]
    )
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    plain = model_deployments(realtime_children(inputs(rts())))[0]
    assert [c["name"] for c in plain["spec"]["template"]["spec"]["containers"]] == ["model"]
    assert plain["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] == "http"


def test_traffic_limit_is_refused_in_gateway_mode() -> None:
    """An HTTPRoute cannot limit the rate: the field is refused rather than ignored."""
    limited = rts(trafficLimit={"requestsPerSecond": 10})
    problems = validate_object(limited, ValidationContext(catalog=gateway_catalog()))
    assert [(p.path, p.message) for p in problems] == [
        (
            "spec.trafficLimit",
            "not supported with the gateway-api router (the catalog's "
            "router.mode); limit the rate at the Gateway instead",
        )
    ]
    assert validate_object(limited) == []  # nginx mode limits it


def router_parts(case: str) -> tuple[str, RouterAgentConfig, dict[str, Any], dict[str, Any]]:
    """nginx.conf, router.json (parsed back), the router pod spec and the stable Service."""
    children = realtime_children(inputs(CASES[case]))
    [config_map] = of_kind(children, "ConfigMap")
    router = of_kind(children, "Deployment")[-1]
    service = next(c for c in of_kind(children, "Service") if c["metadata"]["name"] == "svc")
    agent = RouterAgentConfig.from_json(config_map["data"]["router.json"])
    return config_map["data"]["nginx.conf"], agent, router["spec"]["template"]["spec"], service


def test_the_router_pod_runs_nginx_and_its_agent_sharing_a_socket_folder() -> None:
    _, agent, pod, service = router_parts("two-versions")
    nginx, sidecar = pod["containers"]
    assert (nginx["name"], sidecar["name"]) == ("nginx", "agent")
    assert sidecar["image"] == default_catalog().images.inferops
    assert sidecar["args"] == ["router-agent", "--config", "/etc/inferops/router.json"]
    assert sidecar["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    for container in (nginx, sidecar):
        assert {"name": "run", "mountPath": "/run/inferops"} in container["volumeMounts"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert not [e for e in sidecar["env"] if e["name"].startswith("AWS_")]  # no pairing
    assert {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"} in (
        service["spec"]["ports"]
    )
    assert [(t.label, t.shadow_percent) for t in agent.targets] == [
        ("iris:1.0.0", None),
        ("iris:2.0.0", None),
    ]
    assert agent.service == "svc" and agent.pairing is None


@pytest.mark.parametrize(
    ("case", "mirrors", "paired"),
    [("two-versions", 0, False), ("shadow", 1, False), ("shadow-paired", 0, True)],
)
def test_shadows_are_mirrored_or_paired_through_the_agent(
    case: str, mirrors: int, paired: bool
) -> None:
    conf, agent, pod, _ = router_parts(case)
    assert conf.count("mirror /inferops-mirror/") == mirrors
    assert ("proxy_pass http://$inferops_proxy;" in conf) is paired
    assert (agent.pairing is not None) is paired
    if case != "two-versions":
        assert [t.shadow_percent for t in agent.targets] == [None, 10]
        assert "        100% " in conf  # the shadow takes no share of the split
    if paired:
        assert agent.pairing is not None
        assert (agent.pairing.output, agent.pairing.sample_ratio) == ("s3://bucket/dc/", 0.5)
        env = {e["name"] for e in pod["containers"][1]["env"]}
        assert {"INFEROPS_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= env


def test_routing_names_the_pin_header_and_the_sticky_key() -> None:
    conf, _, _, _ = router_parts("sticky")
    assert "map $http_x_model $inferops_pinned {" in conf
    assert "map $cookie_session $inferops_key {" in conf
    assert 'split_clients "$inferops_key" $inferops_split {' in conf


def test_the_router_policy_lets_scrapers_reach_the_metrics_port() -> None:
    catalog = default_catalog()
    catalog = catalog.model_copy(
        update={
            "network_policies": catalog.network_policies.model_copy(
                update={"metrics_from": [{"namespaceSelector": {}}]}
            )
        }
    )
    children = realtime_children(inputs(CASES["two-versions"], catalog))
    router = next(
        p for p in of_kind(children, "NetworkPolicy") if p["metadata"]["name"] == "svc-router"
    )
    assert router["spec"]["ingress"][1] == {
        "ports": [{"protocol": "TCP", "port": "metrics"}],
        "from": [{"namespaceSelector": {}}],
    }
