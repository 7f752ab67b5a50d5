"""Tenancy: what a cluster object may name and what its pods get.

Local paths and credentials in URLs (refused for cluster objects, still run locally),
updates that keep a problem the catalog or the cluster made (accepted with a warning), the
Secrets a service may use, and what every child pod runs with."""

from __future__ import annotations

import copy
import urllib.request
from typing import Any

import kubernetes_validate
import pytest

from inferops.api.application import AIApplicationSpec
from inferops.api.batch import BatchServiceSpec
from inferops.api.catalog import Catalog, GatewayRef, NetworkPolicies, RouterConfig, default_catalog
from inferops.api.names import ANNOTATION_USABLE_SECRETS, LABEL_USABLE
from inferops.contract.batch_worker import config_from_service
from inferops.resources.batch import BatchInputs, batch_job
from inferops.resources.desired import CHILD_KINDS, desired_state, parse_service
from inferops.resources.nginx import VERSION_HEADER, Backend
from inferops.validation import ValidationContext, known_application, validate_object
from inferops.validation.advice import warnings_for
from inferops.validation.references import index_applications, namespace_of, version_specs
from inferops.validation.secrets import (
    LABELLED,
    LISTED,
    MISSING,
    UNLABELLED,
    UNREADABLE,
    listed_secrets,
    secret_references,
    secret_rules,
    secret_state,
)
from tests.router_support import UPSTREAM_HEADER, running_router, running_upstreams
from tests.unit.rules_table import app, bs, edit, rts, version

Obj = dict[str, Any]
APP_INDEX = {
    (namespace_of(a), a["metadata"]["name"]): known
    for a in [app()]
    if (known := known_application(a)) is not None
}


def problems(obj: Obj, **ctx: Any) -> list[tuple[str, str]]:
    found = validate_object(obj, ValidationContext(applications=APP_INDEX, **ctx))
    return [(p.path, p.message) for p in found]


# --- local paths and credentials in URLs -------------------------------------------------


def test_a_local_batch_run_still_takes_the_local_paths_validation_refuses() -> None:
    local = bs(inputPath="/data/in/", outputPath="/tmp/out/")
    assert {p for p, _ in problems(local)} == {"spec.inputPath", "spec.outputPath"}
    config = config_from_service(local, app(), "http://127.0.0.1:8080", "T")
    assert (config.input_path, config.output_path) == ("/data/in/", "/tmp/out/")


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://AKIAEXAMPLE:s3cr3t-key@obs.example.com",
        "http://s3cr3t-key@10.0.0.5:9000/",
        # Malformed besides: the pattern refuses it, and quotes it without the credentials.
        "https://user:s3cr3t-key@obs example.com",
    ],
)
def test_credentials_in_an_endpoint_are_refused_and_never_quoted(endpoint: str) -> None:
    for obj in (rts(storage={"endpoint": endpoint}), bs(storage={"endpoint": endpoint})):
        found = problems(obj)
        assert [p for p, _ in found] == ["spec.storage.endpoint"], found
        assert all("s3cr3t-key" not in m for _, m in found), found


def test_no_builder_puts_url_credentials_into_the_pod() -> None:
    """Even a spec that reaches a builder without validation (render of an old object, a
    cluster without the webhook before the reconciler refuses it) keeps them out."""
    obj = copy.deepcopy(bs(storage={"endpoint": "https://AKIA:s3cr3t-key@obs.example.com:9000/"}))
    obj["metadata"].update(namespace="ns", uid="0f1e2d3c-4b5a-6978")
    spec = BatchServiceSpec.model_validate(obj["spec"])
    version_spec = AIApplicationSpec.model_validate(app()["spec"]).versions[0]
    job = batch_job(BatchInputs(obj, spec, version_spec, default_catalog()))
    assert "s3cr3t-key" not in str(job)
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "INFEROPS_S3_ENDPOINT", "value": "https://obs.example.com:9000/"} in env


# --- updates keep what they did not bring (ratcheting) -----------------------------------

WITHOUT_4U8G = Catalog.model_validate(
    {
        **default_catalog().model_dump(by_alias=True),
        "flavors": [
            f.model_dump(by_alias=True) for f in default_catalog().flavors if f.name != "cpu.4u8g"
        ],
    }
)
STORED = rts(version("1.0.0", 70, specification="cpu.4u8g"), version("2.0.0", 30))
GONE = (
    "spec.versions[0].specification",
    "unknown flavor 'cpu.4u8g'; the catalog offers: cpu.2u4g, free.1u2g, gpu.1x",
)


def annotated(obj: Obj, key: str, value: str) -> Obj:
    return edit(obj, lambda o: o["metadata"].setdefault("annotations", {}).update({key: value}))


@pytest.mark.parametrize(
    ("update", "refused"),
    [
        (annotated(STORED, "serving.inferops.dev/last-handled-configuration", "{}"), False),
        (edit(STORED, lambda o: o["metadata"].update(labels={"argocd/instance": "a"})), False),
        (edit(STORED, lambda o: o["spec"].update(stopped=True)), False),
        # The ratios do not concern the catalog: the flavor that left it stays a warning.
        (
            edit(
                STORED,
                lambda o: (
                    o["spec"]["versions"][0].update(trafficRatio=50),
                    o["spec"]["versions"][1].update(trafficRatio=50),
                ),
            ),
            False,
        ),
        # Naming the gone flavor anew, or another unknown one, is this update's problem.
        (
            edit(STORED, lambda o: o["spec"]["versions"][1].update(specification="cpu.4u8g")),
            True,
        ),
        (
            edit(STORED, lambda o: o["spec"]["versions"][0].update(specification="cpu.64u")),
            True,
        ),
    ],
    ids=["kopf-annotation", "argocd-label", "stopped", "ratios", "second-use", "other-flavor"],
)
def test_an_update_is_refused_only_for_what_it_brings(update: Obj, refused: bool) -> None:
    assert problems(STORED, catalog=WITHOUT_4U8G) == [GONE]  # the catalog changed under it
    found = problems(update, catalog=WITHOUT_4U8G, old=STORED)
    assert bool(found) is refused, found
    assert GONE not in found  # never the problem the stored object already had
    if not refused:
        ctx = ValidationContext(applications=APP_INDEX, catalog=WITHOUT_4U8G, old=STORED)
        [warning] = warnings_for(update, ctx)
        assert warning.startswith(f"{GONE[0]}: {GONE[1]}")
        assert "so it was before this update, which is accepted" in warning


def test_a_create_gets_no_ratcheting() -> None:
    assert problems(STORED, catalog=WITHOUT_4U8G) == [GONE]
    assert warnings_for(STORED, ValidationContext(catalog=WITHOUT_4U8G)) == []


# --- which Secrets a service may use ------------------------------------------------------


def secret_env(name: str, key: str = "k") -> list[Obj]:
    return [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}]


def app_with_secret(name: str) -> Obj:
    return edit(app(), lambda o: o["spec"]["versions"][0].update(env=secret_env(name)))


@pytest.mark.parametrize(
    ("obj", "apps", "expected"),
    [
        (rts(storage={"secretRef": {"name": "s3"}}), [], [("spec.storage.secretRef", "s3")]),
        (
            rts(version("1.0.0", 70, env=secret_env("tok")), version("2.0.0", 30)),
            [],
            [("spec.versions[0].env[0]", "tok")],
        ),
        (bs(env=secret_env("tok")), [], [("spec.env[0]", "tok")]),
        (
            bs(storage={"secretRef": {"name": "s3"}}),
            [app_with_secret("app-tok")],
            [("spec.storage.secretRef", "s3"), ("spec.version", "app-tok")],
        ),
        (
            rts(version("1.0.0", 100)),
            [app_with_secret("app-tok")],
            [("spec.versions[0].version", "app-tok")],
        ),
        (app_with_secret("app-tok"), [], [("spec.versions[0].env[0]", "app-tok")]),
        (rts(version("1.0.0", 100, env=[{"name": "A", "value": "x"}])), [], []),
    ],
    ids=["storage", "service-env", "batch-env", "batch-app-env", "app-env", "app", "none"],
)
def test_every_secret_reference_is_found(
    obj: Obj, apps: list[Obj], expected: list[tuple[str, str]]
) -> None:
    index = {("default", a["metadata"]["name"]): known_application(a) for a in apps}
    refs = secret_references(obj, index or None)  # type: ignore[arg-type]
    assert [(r.path, r.name) for r in refs] == expected


@pytest.mark.parametrize(
    ("state", "fragment"),
    [
        (LABELLED, None),
        (LISTED, None),
        (
            UNLABELLED,
            f'not marked usable by services (their pods run images the operator does not vet): label it {LABEL_USABLE}="true"',
        ),
        (MISSING, "does not exist in this namespace"),
        (UNREADABLE, "the operator may not read its labels (RBAC: get on secrets)"),
    ],
)
def test_only_secrets_the_namespace_marked_are_usable(state: str, fragment: str | None) -> None:
    obj = rts(version("1.0.0", 100, env=secret_env("db")))
    found = problems(obj, secrets={"db": state})
    if fragment is None:
        assert found == []
    else:
        [(path, message)] = found
        assert path == "spec.versions[0].env[0]" and fragment in message
        assert message.startswith("Secret 'db'")


def test_an_unauthenticated_caller_cannot_tell_missing_from_unlabelled() -> None:
    obj = rts(version("1.0.0", 100, env=secret_env("db")))
    missing = problems(obj, secrets={"db": MISSING}, disclose=False)
    unlabelled = problems(obj, secrets={"db": UNLABELLED}, disclose=False)
    assert missing == unlabelled and "not usable by services here" in missing[0][1]


def test_the_secret_an_application_passes_is_named_with_its_application() -> None:
    obj = rts(version("1.0.0", 100))
    found = validate_object(
        obj,
        ValidationContext(
            applications={("default", "iris"): known_application(app_with_secret("t"))},  # type: ignore[dict-item]
            secrets={"t": UNLABELLED},
        ),
    )
    assert [str(p) for p in found] == [
        "RealTimeService/svc: spec.versions[0].version: application 'iris' version '1.0.0' "
        "env TOKEN: Secret 't' is not marked usable by services (their pods run images the "
        f'operator does not vet): label it {LABEL_USABLE}="true", or list it in the '
        f"Namespace annotation {ANNOTATION_USABLE_SECRETS}"
    ]


def test_secret_states_from_metadata_and_the_namespace_annotation() -> None:
    assert secret_state(None) == MISSING
    assert secret_state({"labels": {LABEL_USABLE: "true"}}) == LABELLED
    assert secret_state({"labels": {LABEL_USABLE: "yes"}}) == UNLABELLED
    assert secret_state({}) == UNLABELLED
    assert listed_secrets({ANNOTATION_USABLE_SECRETS: " a, b ,,c"}) == {"a", "b", "c"}
    assert listed_secrets({}) == frozenset()
    assert list(secret_rules([], {})) == []


# --- what every child pod runs with ---------------------------------------------------------

K8S = "1.37.0"
CATALOG = default_catalog()
GATEWAY = CATALOG.model_copy(
    update={
        "router": RouterConfig(mode="gateway-api", gateway=GatewayRef(name="gw", namespace="gw"))
    }
)
NO_POLICIES = CATALOG.model_copy(update={"network_policies": NetworkPolicies(enabled=False)})
STORE = {"ipBlock": {"cidr": "10.20.0.0/16"}}
RESTRICTED = CATALOG.model_copy(
    update={
        "network_policies": NetworkPolicies(
            restrict_egress=True,
            egress_to=[STORE],
            ingress_from=[{"namespaceSelector": {"matchLabels": {"team": "web"}}}],
        )
    }
)
SERVICES = {
    "plain": rts(),
    "collecting": rts(
        version("1.0.0", 100),
        dataCollection={"enabled": True, "outputPath": "s3://bucket/dc/"},
        storage={"endpoint": "http://s3.local:9000", "secretRef": {"name": "creds"}},
    ),
    "model-uri": rts(version("1.0.0", 100)),
    "multipool": edit(
        rts(version("1.0.0", 100, computeNodes=2)),
        lambda o: o["spec"].update(
            multiPoolLoadBalancing={"enabled": True, "pools": ["pool-a", "pool-b"]}
        ),
    ),
    "batch": bs(storage={"endpoint": "http://s3.local:9000", "secretRef": {"name": "creds"}}),
}


def children(obj: Obj, catalog: Catalog = CATALOG, model_uri: str | None = None) -> list[Obj]:
    obj = copy.deepcopy(obj)
    obj["metadata"].update(namespace="ns", uid="0f1e2d3c-4b5a-6978")
    app_obj = app()
    app_obj["metadata"]["namespace"] = "ns"
    if model_uri:
        app_obj["spec"]["versions"][0]["modelUri"] = model_uri
    lookup = version_specs(index_applications([app_obj]), "ns")
    return desired_state(parse_service(obj, lookup), catalog)


def pod_specs(built: list[Obj]) -> list[Obj]:
    return [c["spec"]["template"]["spec"] for c in built if c["kind"] in ("Deployment", "Job")]


def policies(built: list[Obj]) -> dict[str, Obj]:
    return {c["metadata"]["name"]: c["spec"] for c in built if c["kind"] == "NetworkPolicy"}


@pytest.mark.parametrize("case", SERVICES)
@pytest.mark.parametrize(
    "catalog", [CATALOG, GATEWAY, RESTRICTED], ids=["nginx", "gateway", "restricted"]
)
def test_no_child_pod_gets_a_service_account_token(case: str, catalog: Catalog) -> None:
    """Models, routers, fetch-model, the agent and the batch worker never call the API."""
    built = children(SERVICES[case], catalog, "s3://models/iris/" if case == "model-uri" else None)
    specs = pod_specs(built)
    assert specs
    assert all(spec["automountServiceAccountToken"] is False for spec in specs)
    for child in built:
        if child["kind"] != "HTTPRoute":  # not a Kubernetes kind (tests/cluster checks it)
            kubernetes_validate.validate(child, K8S, strict=True)


def test_model_pods_take_traffic_only_from_their_router_on_the_service_port() -> None:
    found = policies(children(SERVICES["collecting"]))
    assert set(found) == {"svc-models", "svc-router"}
    models, router = found["svc-models"], found["svc-router"]
    owner = {
        "app.kubernetes.io/managed-by": "inferops",
        "serving.inferops.dev/owner-kind": "RealTimeService",
        "serving.inferops.dev/owner-name": "svc",
    }
    assert models == {
        "podSelector": {"matchLabels": {**owner, "app.kubernetes.io/component": "model"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [
                    {
                        "podSelector": {
                            "matchLabels": {**owner, "app.kubernetes.io/component": "router"}
                        }
                    }
                ],
                # "http" is the agent's port when it collects: the model's own port ("model")
                # is not reachable from outside the pod.
                "ports": [{"protocol": "TCP", "port": "http"}],
            }
        ],
    }
    assert router == {
        "podSelector": {"matchLabels": {**owner, "app.kubernetes.io/component": "router"}},
        "policyTypes": ["Ingress"],
        # the service port, and the router agent's metrics (metricsFrom; empty: any source)
        "ingress": [
            {"ports": [{"protocol": "TCP", "port": "http"}]},
            {"ports": [{"protocol": "TCP", "port": "metrics"}]},
        ],
    }
    [deployment] = [
        c
        for c in children(SERVICES["collecting"])
        if c["metadata"]["name"].startswith("svc-iris") and c["kind"] == "Deployment"
    ]
    ports = {
        c["name"]: [p["name"] for p in c["ports"]]
        for c in deployment["spec"]["template"]["spec"]["containers"]
    }
    assert ports == {"model": ["model"], "agent": ["http"]}
    # Every model pod, of every version and pool, is selected.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert models["podSelector"]["matchLabels"].items() <= labels.items()


def test_gateway_mode_lets_the_gateway_reach_the_models() -> None:
    found = policies(children(SERVICES["plain"], GATEWAY))
    assert set(found) == {"svc-models"}
    assert found["svc-models"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": "http"}]}]


def test_batch_pods_take_no_traffic() -> None:
    built = children(SERVICES["batch"])
    assert [c["kind"] for c in built] == ["Job", "NetworkPolicy"]
    job, policy = built
    spec = policy["spec"]
    assert spec["ingress"] == [] and spec["policyTypes"] == ["Ingress"]
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_restricted_egress_allows_dns_the_models_and_the_store_only() -> None:
    found = policies(children(SERVICES["plain"], RESTRICTED))
    dns = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    models, router = found["svc-models"], found["svc-router"]
    assert models["policyTypes"] == router["policyTypes"] == ["Ingress", "Egress"]
    assert models["egress"] == [dns, {"to": [STORE]}]
    assert router["egress"][0] == dns and router["egress"][2] == {"to": [STORE]}
    assert router["egress"][1]["to"][0]["podSelector"] == models["podSelector"]
    assert router["ingress"] == [
        {
            "ports": [{"protocol": "TCP", "port": "http"}],
            "from": [{"namespaceSelector": {"matchLabels": {"team": "web"}}}],
        },
        {"ports": [{"protocol": "TCP", "port": "metrics"}]},
    ]
    [batch] = policies(children(SERVICES["batch"], RESTRICTED)).values()
    assert batch["egress"] == [dns, {"to": [STORE]}]


def test_network_policies_can_be_left_out_and_are_pruned() -> None:
    assert policies(children(SERVICES["plain"], NO_POLICIES)) == {}
    assert policies(children(SERVICES["batch"], NO_POLICIES)) == {}
    assert ("networking.k8s.io/v1", "NetworkPolicy") in CHILD_KINDS["RealTimeService"]
    assert ("networking.k8s.io/v1", "NetworkPolicy") in CHILD_KINDS["BatchService"]


# --- what the router tells clients ----------------------------------------------------------


def router_config(catalog: Catalog = CATALOG) -> str:
    [config_map] = [c for c in children(SERVICES["plain"], catalog) if c["kind"] == "ConfigMap"]
    return str(config_map["data"]["nginx.conf"])


def test_the_router_config_names_versions_not_services() -> None:
    config = router_config()
    assert "X-Inferops-Backend" not in config
    assert "add_header X-Inferops-Version $inferops_version always;" in config
    assert '"iris:1.0.0";' in config and '"iris:2.0.0";' in config
    hidden = CATALOG.model_copy(update={"router": RouterConfig(version_header=False)})
    assert "add_header" not in router_config(hidden)


@pytest.mark.parametrize("header", [True, False])
def test_answers_carry_the_version_and_never_the_upstream(header: bool) -> None:
    """Real nginx running the generated config in front of two upstreams whose names
    stand for the version Services' names."""
    names = ("svc-iris-1-0-0-da9f2149", "svc-iris-2-0-0-68d2acd4")
    with running_upstreams(*names) as up:
        backends = [
            Backend(names[0], up[names[0]], 50, "iris:1.0.0"),
            Backend(names[1], up[names[1]], 50, "iris:2.0.0"),
        ]
        with running_router(backends, version_header=header) as router:
            seen = []
            for _ in range(20):
                with urllib.request.urlopen(f"{router.url}/") as response:
                    body = response.read().decode()
                    router_headers = {
                        k: v for k, v in response.headers.items() if k != UPSTREAM_HEADER
                    }
                seen.append((body, router_headers))
    labels = {names[0]: "iris:1.0.0", names[1]: "iris:2.0.0"}
    for body, headers in seen:
        assert "X-Inferops-Backend" not in headers
        assert not any(n in str(headers) for n in names), headers
        if header:
            assert headers[VERSION_HEADER] == labels[body]
        else:
            assert VERSION_HEADER not in headers
    assert {body for body, _ in seen} == set(names)
