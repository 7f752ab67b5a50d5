"""The Helm chart, rendered and linted offline with Helm's own SDK (helm-python-sdk).

Default and non-default values: the catalog the operator reads, least-privilege RBAC, the
hardened Deployment whose args the operator's CLI accepts, the webhook's certificate and
routes, cert-manager mode, peering, metrics, and every object valid for Kubernetes.
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from inferops.api.application import AIApplicationSpec
from inferops.api.catalog import Catalog, default_catalog, load_catalog
from inferops.api.realtime import RealTimeServiceSpec
from inferops.certs import client_certificate
from inferops.cli import build_parser
from inferops.resources.realtime import Inputs, realtime_children
from tests.unit import rules_table

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "inferops"
K8S_VERSION = "1.37.0"
RELEASE, NAMESPACE = "inferops", "inferops-system"
KINDS_OF_ADMISSION = ["aiapplications", "realtimeservices", "batchservices"]


@functools.cache
def client_ca_pem() -> str:
    """A CA for the API server's webhook client certificate (webhook.clientAuth.caBundle)."""
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="inferops-chart-client-ca-"))
    return client_certificate(directory, "kube-apiserver-webhook-client").cafile.read_text()


CONTROL_PLANE = [{"ipBlock": {"cidr": "172.16.0.0/28"}}]
SCRAPERS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]

NON_DEFAULT: dict[str, Any] = {
    "fullnameOverride": "mlops",
    "image": {
        "repository": "registry.example.com/inferops",
        "tag": "9.9.9",
        "pullPolicy": "Always",
    },
    "imagePullSecrets": [{"name": "regcred"}],
    "watchNamespaces": ["team-a", "team-b"],
    "replicaCount": 2,
    "peering": {"enabled": True},
    "crds": {"install": True, "keep": False},
    "operator": {"verbose": True, "healthPort": 8181},
    "webhook": {
        "port": 8443,
        "failurePolicy": "Ignore",
        "timeoutSeconds": 5,
        "certManager": {"enabled": True, "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}},
        "clientAuth": {
            "caBundle": client_ca_pem(),
            "allowedNames": ["kube-apiserver-webhook-client"],
        },
    },
    "networkPolicy": {"webhook": {"from": CONTROL_PLANE}, "metrics": {"from": SCRAPERS}},
    "metrics": {"port": 9191, "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "catalog": {
        "pools": [
            {"name": "public", "type": "public"},
            {
                "name": "gpu-pool",
                "type": "dedicated",
                "nodeSelector": {"example.com/gpu": "a100"},
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                ],
            },
        ],
        "flavors": [
            {"name": "cpu.1u1g", "cpu": "1", "memory": "1Gi", "pools": ["public"]},
            {"name": "gpu.a100", "cpu": 16, "memory": "64Gi", "gpu": 2, "pools": ["gpu-pool"]},
        ],
        "quotas": {
            "realTimeServicesPerNamespace": 5,
            "batchServicesPerNamespace": 50,
            "publicPoolInstancesPerNamespace": 8,
        },
        "router": {"mode": "gateway-api", "gateway": {"name": "web", "namespace": "gateways"}},
        "images": {"inferops": "registry.example.com/inferops-data:1", "router": "nginx:1"},
        "batch": {"maxImageBytes": 1048576, "maxCsvBytes": 2097152, "manifestMaxLines": 500},
    },
}


@functools.cache
def _chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render_docs(
    values: dict[str, Any] | None = None, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    rendered = _chart().render(values or {}, name=RELEASE, namespace=namespace)
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


@functools.cache
def _cached(key: str) -> list[dict[str, Any]]:
    return render_docs(json.loads(key))


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rendered objects (cached per values; callers must not change them)."""
    return _cached(json.dumps(values or {}, sort_keys=True))


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


IRIS_VERSIONS = {
    ("iris", v.version): v
    for v in AIApplicationSpec.model_validate(rules_table.app()["spec"]).versions
}


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {[d['metadata']['name'] for d in found]}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def rendered_catalog(docs: list[dict[str, Any]], tmp_path: Path) -> Catalog:
    config_map = next(
        d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-catalog")
    )
    path = tmp_path / "catalog.yaml"
    path.write_text(config_map["data"]["catalog.yaml"])
    return load_catalog(path)


def rules(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("ClusterRole", "Role"):
            for rule in doc.get("rules") or []:
                yield f"{doc['kind']}/{doc['metadata']['name']}", rule


# ---- lint and schema ---------------------------------------------------------------------


@pytest.mark.parametrize("values", [{}, NON_DEFAULT], ids=["default", "non-default"])
def test_lints_clean_in_strict_mode(values: dict[str, Any]) -> None:
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{K8S_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("values", [{}, NON_DEFAULT], ids=["default", "non-default"])
def test_every_object_is_valid_for_kubernetes(values: dict[str, Any]) -> None:
    docs = render(values)
    for doc in docs:
        if doc["apiVersion"].split("/")[0] in (
            "cert-manager.io",
            "monitoring.coreos.com",
            "kopf.dev",
        ):
            continue  # third-party kinds: kubernetes-validate has no schema for them
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    names = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(set(names)) == len(names), "two objects with one name"


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"replicaCount": "two"}, "replicaCount"),
        ({"webhook": {"failurePolicy": "Sometimes"}}, "failurePolicy"),
        ({"catalog": {"router": {"mode": "istio"}}}, "mode"),
        (
            {
                "catalog": {
                    "flavors": [
                        {"name": "x", "cpu": "1", "memory": "1Gi", "pools": ["public"], "gpus": 1}
                    ]
                }
            },
            "gpus",
        ),
        (
            {"catalog": {"quotas": {"realTimeServicesPerNamespace": -1}}},
            "realTimeServicesPerNamespace",
        ),
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
    ],
)
def test_schema_refuses_bad_values(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(helm.HelmValuesError) as info:
        _chart().validate_schema(values)
    assert fragment in str(info.value)


@pytest.mark.parametrize("path", sorted((CHART / "ci").glob("*.yaml")), ids=lambda p: p.name)
def test_ci_values_files_lint_and_give_a_valid_catalog(path: Path, tmp_path: Path) -> None:
    values = yaml.safe_load(path.read_text())
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{K8S_VERSION}")
    assert report["errors"] == [] and not [m for m in report["messages"] if m["severity"] >= 2]
    docs = render(values)
    assert rendered_catalog(docs, tmp_path).flavor("cpu.2u4g") is not None
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_more_replicas_need_peering() -> None:
    with pytest.raises(helm.HelmError, match=r"replicaCount > 1 needs peering\.enabled"):
        render_docs({"replicaCount": 3})


# ---- the catalog -------------------------------------------------------------------------


def test_default_values_render_the_built_in_catalog(tmp_path: Path) -> None:
    assert rendered_catalog(render(), tmp_path) == default_catalog()


def test_catalog_values_reach_the_operator(tmp_path: Path) -> None:
    assert rendered_catalog(render(NON_DEFAULT), tmp_path) == Catalog.model_validate(
        NON_DEFAULT["catalog"]
    )


def test_data_plane_image_follows_the_operator_image(tmp_path: Path) -> None:
    values = {"image": {"repository": "example.com/io", "tag": "2.0"}}
    catalog = rendered_catalog(render(values), tmp_path)
    assert catalog.images.inferops == "example.com/io:2.0"
    assert container(render(values))["image"] == "example.com/io:2.0"
    digest = "sha256:" + "a" * 64
    assert (
        container(render({"image": {"digest": digest}}))["image"]
        == f"ghcr.io/inferops/inferops@{digest}"
    )


def test_a_new_catalog_rolls_the_operator() -> None:
    def checksum(values: dict[str, Any]) -> str:
        template = one(render(values), "Deployment")["spec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/catalog"])

    assert checksum({}) == checksum({"replicaCount": 1})
    assert checksum({}) != checksum({"catalog": {"quotas": {"realTimeServicesPerNamespace": 3}}})


# ---- RBAC --------------------------------------------------------------------------------

ALLOWED_VERBS = {"get", "list", "watch", "create", "patch", "delete"}
# Every rule, as (apiGroup, resource) -> verbs, for the cluster-wide default.
EXPECTED_CLUSTER_WIDE = {
    ("", "namespaces"): {"get", "list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    ("serving.inferops.dev", "aiapplications"): {"get", "list", "watch"},
    ("serving.inferops.dev", "realtimeservices"): {"get", "list", "watch"},
    ("serving.inferops.dev", "batchservices"): {"get", "list", "watch"},
    ("serving.inferops.dev", "aiapplications/status"): {"patch"},
    ("serving.inferops.dev", "realtimeservices/status"): {"patch"},
    ("serving.inferops.dev", "batchservices/status"): {"patch"},
    ("", "events"): {"create"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "patch", "delete"},
    ("gateway.networking.k8s.io", "httproutes"): {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "delete",
    },
    ("networking.k8s.io", "networkpolicies"): {"get", "list", "watch", "create", "patch", "delete"},
    # Metadata only (whether a Secret a service names is labelled usable): never list/watch.
    ("", "secrets"): {"get"},
}


def flat(docs: list[dict[str, Any]], kinds: tuple[str, ...]) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for doc in docs:
        if doc["kind"] in kinds:
            for rule in doc["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        found.setdefault((group, resource), set()).update(rule["verbs"])
    return found


@pytest.mark.parametrize(
    "values",
    [
        {},
        NON_DEFAULT,
        {"peering": {"enabled": True}, "replicaCount": 2},
        {"watchNamespaces": ["a"]},
        {"catalog": NON_DEFAULT["catalog"]},
    ],
    ids=["default", "non-default", "ha", "namespaced", "gateway"],
)
def test_no_rule_grants_a_wildcard_or_anything_dangerous(values: dict[str, Any]) -> None:
    found = list(rules(render(values)))
    assert found
    for where, rule in found:
        fields = [
            *rule.get("apiGroups", []),
            *rule.get("resources", []),
            *rule["verbs"],
            *rule.get("nonResourceURLs", []),
            *rule.get("resourceNames", []),
        ]
        assert not any("*" in f for f in fields), f"{where}: {rule}"
        assert set(rule["verbs"]) <= ALLOWED_VERBS, f"{where}: {rule}"  # no escalate, bind...
        if "secrets" in rule["resources"]:
            # Labels of the Secrets a service names, one get at a time: never list, watch
            # or any write (which would read or change every Secret at once).
            assert rule == {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
            continue
        assert not {
            "serviceaccounts",
            "roles",
            "clusterroles",
            "rolebindings",
            "clusterrolebindings",
            "validatingwebhookconfigurations",
            "nodes",
            "mutatingwebhookconfigurations",
        } & set(rule["resources"]), f"{where}: {rule}"
        assert "nonResourceURLs" not in rule


def test_cluster_wide_rules_are_exactly_what_the_operator_uses() -> None:
    docs = render()
    assert flat(docs, ("ClusterRole",)) == EXPECTED_CLUSTER_WIDE
    assert by_kind(docs, "Role") == [] and by_kind(docs, "RoleBinding") == []
    bindings = by_kind(docs, "ClusterRoleBinding")
    assert sorted(b["roleRef"]["name"] for b in bindings) == ["inferops", "inferops-cluster"]
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "inferops", "namespace": NAMESPACE}
        ]


def test_watched_namespaces_get_roles_and_the_cluster_gets_only_reads() -> None:
    docs = render(NON_DEFAULT)
    cluster = flat(docs, ("ClusterRole",))
    assert cluster == {
        ("", "namespaces"): {"get", "list", "watch"},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    }
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    namespaced = {
        k: v
        for k, v in EXPECTED_CLUSTER_WIDE.items()
        if k[1] not in ("namespaces", "customresourcedefinitions")
    }
    namespaced[("kopf.dev", "kopfpeerings")] = {"get", "list", "watch", "patch"}
    for role in roles:
        assert flat([role], ("Role",)) == namespaced
    bindings = by_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(b["subjects"][0]["namespace"] == NAMESPACE for b in bindings)
    assert "--namespace=team-a" in container(docs)["args"]


def test_cluster_wide_peering_gets_its_own_rule() -> None:
    docs = render({"peering": {"enabled": True}, "replicaCount": 2})
    assert flat(docs, ("ClusterRole",))[("kopf.dev", "clusterkopfpeerings")] == {
        "get",
        "list",
        "watch",
        "patch",
    }


def test_secret_labels_can_be_left_unread() -> None:
    """rbac.readSecretLabels=false: no access to Secrets at all (the Namespace annotation
    is then the only way to make one usable by services)."""
    for values in (
        {"rbac": {"readSecretLabels": False}},
        {"rbac": {"readSecretLabels": False}, "watchNamespaces": ["a"]},
    ):
        assert all("secrets" not in rule["resources"] for _, rule in rules(render(values)))


def test_rbac_and_service_account_can_be_left_out() -> None:
    docs = render({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "own"}})
    assert not [d for d in docs if d["apiVersion"].startswith("rbac.")]
    assert by_kind(docs, "ServiceAccount") == []
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "own"


# ---- the Deployment ----------------------------------------------------------------------


@pytest.mark.parametrize("values", [{}, NON_DEFAULT], ids=["default", "non-default"])
def test_operator_runs_hardened_with_probes_and_resources(values: dict[str, Any]) -> None:
    docs = render(values)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    ctr = container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sec = ctr["securityContext"]
    assert sec["readOnlyRootFilesystem"] is True and sec["allowPrivilegeEscalation"] is False
    assert sec["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in sec
    health = next(p for p in ctr["ports"] if p["name"] == "health")["containerPort"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert ctr[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert f"--liveness=http://0.0.0.0:{health}/healthz" in ctr["args"]
    assert set(ctr["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(ctr["resources"]["requests"])
    assert "memory" in ctr["resources"]["limits"]
    mounts = {m["mountPath"]: m for m in ctr["volumeMounts"]}
    assert "/tmp" in mounts  # the only writable path
    assert mounts["/etc/inferops/catalog"]["readOnly"] is True


@pytest.mark.parametrize(
    "values",
    [{}, NON_DEFAULT, {"webhook": {"enabled": False}, "metrics": {"enabled": False}}],
    ids=["default", "non-default", "bare"],
)
def test_the_operator_cli_accepts_the_args(values: dict[str, Any]) -> None:
    ctr = container(render(values))
    assert ctr["args"][0] == "operator"
    args = build_parser().parse_args(ctr["args"])
    assert args.catalog == "/etc/inferops/catalog/catalog.yaml"
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    if values.get("metrics", {}).get("enabled", True):
        assert args.metrics_port == ports["metrics"]
    else:
        assert args.metrics_port == 0 and "metrics" not in ports
    if values.get("webhook", {}).get("enabled", True):
        assert args.webhook_port == ports["webhook"]
        assert args.webhook_cert_dir == "/etc/inferops/webhook"
    else:
        assert args.webhook_port is None and "webhook" not in ports


def test_standalone_recreates_and_peering_rolls() -> None:
    assert one(render(), "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert by_kind(render(), "PodDisruptionBudget") == []
    docs = render(NON_DEFAULT)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert "--peering=mlops" in container(docs)["args"]
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_peering_objects_match_the_mode() -> None:
    cluster_wide = render({"peering": {"enabled": True}, "replicaCount": 2})
    assert one(cluster_wide, "ClusterKopfPeering")["metadata"]["name"] == "inferops"
    namespaced = by_kind(render(NON_DEFAULT), "KopfPeering")
    assert sorted((p["metadata"]["namespace"], p["metadata"]["name"]) for p in namespaced) == [
        ("team-a", "mlops"),
        ("team-b", "mlops"),
    ]
    assert not by_kind(render(), "ClusterKopfPeering") + by_kind(render(), "KopfPeering")
    # Kopf's peering CRDs are in the chart's crds/, installed before the peering objects.
    peering_crds = [d for c in _chart().crds for d in yaml.safe_load_all(c["data"]) if d]
    assert sorted(d["metadata"]["name"] for d in peering_crds) == [
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    ]
    for crd in peering_crds:
        kubernetes_validate.validate(crd, K8S_VERSION, strict=True)


# ---- webhook -----------------------------------------------------------------------------


def test_webhooks_route_to_the_operators_handlers() -> None:
    import kopf

    import inferops.handlers.admission  # noqa: F401  (registers the handlers)

    ids = sorted(h.id for h in kopf.get_default_registry()._webhooks.get_all_handlers())
    docs = render()
    config = one(docs, "ValidatingWebhookConfiguration")
    service = one(docs, "Service", "inferops-webhook")
    assert (
        sorted(w["clientConfig"]["service"]["path"].lstrip("/") for w in config["webhooks"])
        == ids
        == sorted(KINDS_OF_ADMISSION)
    )
    for webhook in config["webhooks"]:
        plural = webhook["clientConfig"]["service"]["path"].lstrip("/")
        assert webhook["name"] == f"{plural}.serving.inferops.dev"
        assert webhook["rules"][0]["resources"] == [plural]
        assert webhook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
        assert webhook["clientConfig"]["service"] == {
            "name": "inferops-webhook",
            "namespace": NAMESPACE,
            "path": f"/{plural}",
            "port": 443,
        }
        assert webhook["sideEffects"] == "None" and webhook["failurePolicy"] == "Fail"
        assert "namespaceSelector" not in webhook  # every namespace, like the operator
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    assert service["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]


def test_watched_namespaces_limit_the_webhook() -> None:
    docs = render({"watchNamespaces": ["a", "b"]})
    for webhook in one(docs, "ValidatingWebhookConfiguration")["webhooks"]:
        assert webhook["namespaceSelector"] == {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]}
            ]
        }
    own = {"matchLabels": {"inferops": "on"}}
    docs = render({"watchNamespaces": ["a"], "webhook": {"namespaceSelector": own}})
    assert one(docs, "ValidatingWebhookConfiguration")["webhooks"][0]["namespaceSelector"] == own


def test_the_chart_makes_a_ca_and_a_serving_certificate_for_the_service() -> None:
    docs = render()
    secret = one(docs, "Secret")
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert secret["type"] == "kubernetes.io/tls" and set(data) == {"tls.crt", "tls.key", "ca.crt"}
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    cert = x509.load_pem_x509_certificate(data["tls.crt"])
    # The caBundle the API server gets is the CA that signed the serving certificate.
    for webhook in one(docs, "ValidatingWebhookConfiguration")["webhooks"]:
        assert base64.b64decode(webhook["clientConfig"]["caBundle"]) == data["ca.crt"]
    public = ca.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert cert.signature_hash_algorithm is not None
    public.verify(
        cert.signature,
        cert.tbs_certificate_bytes,
        padding.PKCS1v15(),
        cert.signature_hash_algorithm,
    )
    assert cert.issuer == ca.subject
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "inferops-webhook.inferops-system.svc" in names.get_values_for_type(x509.DNSName)
    assert cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > datetime.timedelta(
        days=3000
    )
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(data["tls.key"], None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    mounted = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "webhook-tls",
        "secret": {
            "secretName": "inferops-webhook-tls",
            "items": [{"key": k, "path": k} for k in ("tls.crt", "tls.key", "ca.crt")],
        },
    } in mounted


def test_cert_manager_mode() -> None:
    docs = render({"webhook": {"certManager": {"enabled": True}}})
    assert by_kind(docs, "Secret") == []
    issuer = one(docs, "Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    certificate = one(docs, "Certificate")
    assert certificate["spec"]["secretName"] == "inferops-webhook-tls"
    assert "inferops-webhook.inferops-system.svc" in certificate["spec"]["dnsNames"]
    assert certificate["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"]
    config = one(docs, "ValidatingWebhookConfiguration")
    assert config["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "inferops-system/inferops-webhook"
    }
    assert all("caBundle" not in w["clientConfig"] for w in config["webhooks"])
    docs = render(NON_DEFAULT)
    assert by_kind(docs, "Issuer") == []
    assert one(docs, "Certificate")["spec"]["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
    }


def test_webhook_off_leaves_no_trace() -> None:
    docs = render({"webhook": {"enabled": False}})
    assert not by_kind(docs, "ValidatingWebhookConfiguration") + by_kind(docs, "Secret")
    assert [s["metadata"]["name"] for s in by_kind(docs, "Service")] == ["inferops-metrics"]
    assert not any(a.startswith("--webhook") for a in container(docs)["args"])


# ---- metrics and notes -------------------------------------------------------------------


def test_metrics_service_and_service_monitor() -> None:
    docs = render()
    service = one(docs, "Service", "inferops-metrics")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert by_kind(docs, "ServiceMonitor") == []
    docs = render(NON_DEFAULT)
    monitor = one(docs, "ServiceMonitor", "mlops")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    labels = one(docs, "Service", "mlops-metrics")["metadata"]["labels"]
    assert selector.items() <= labels.items()
    # The routers of every RealTimeService, as the operator labels their stable Services.
    routers = one(docs, "ServiceMonitor", "mlops-routers")
    assert routers["spec"]["namespaceSelector"] == {"any": True}
    assert routers["spec"]["endpoints"][0]["port"] == "metrics"
    spec = RealTimeServiceSpec.model_validate(rules_table.rts()["spec"])
    obj = rules_table.rts() | {"metadata": {"name": "svc", "namespace": "ns", "uid": "1"}}
    children = realtime_children(Inputs(obj, spec, IRIS_VERSIONS, default_catalog()))
    stable = next(c for c in children if c["kind"] == "Service" and c["metadata"]["name"] == "svc")
    assert (
        routers["spec"]["selector"]["matchLabels"].items() <= stable["metadata"]["labels"].items()
    )
    assert "metrics" in [p["name"] for p in stable["spec"]["ports"]]


def test_notes_tell_what_was_installed() -> None:
    notes = _chart().render({}, name=RELEASE, namespace=NAMESPACE)["inferops/templates/NOTES.txt"]
    assert "kubectl -n inferops-system rollout status deployment/inferops" in notes
    assert "every namespace" in notes and "3 pools, 4 flavors" in notes
    notes = _chart().render(NON_DEFAULT, name=RELEASE, namespace=NAMESPACE)[
        "inferops/templates/NOTES.txt"
    ]
    assert "team-a, team-b" in notes and "issued by cert-manager" in notes


# ---- who may call the operator: webhook client authentication, NetworkPolicy -----------


def volume(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    return dict(next(v for v in volumes if v["name"] == name))


def test_without_a_client_ca_the_webhook_verifies_no_caller() -> None:
    docs = render()
    assert not [a for a in container(docs)["args"] if a.startswith("--webhook-client")]
    assert not [v for v in container(docs)["volumeMounts"] if v["name"] == "webhook-client-ca"]
    notes = _chart().render({}, name=RELEASE, namespace=NAMESPACE)["inferops/templates/NOTES.txt"]
    assert "callers are not authenticated" in notes


def test_a_client_ca_bundle_makes_the_webhook_require_the_api_servers_certificate() -> None:
    docs = render(NON_DEFAULT)
    args = build_parser().parse_args(container(docs)["args"])
    assert args.webhook_client_ca == "/etc/inferops/webhook-client/ca.crt"
    assert args.webhook_client_name == ["kube-apiserver-webhook-client"]
    config_map = one(docs, "ConfigMap", "mlops-webhook-client-ca")
    assert config_map["data"] == {"ca.crt": client_ca_pem()}
    assert volume(docs, "webhook-client-ca") == {
        "name": "webhook-client-ca",
        "configMap": {
            "name": "mlops-webhook-client-ca",
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
        },
    }
    mount = next(m for m in container(docs)["volumeMounts"] if m["name"] == "webhook-client-ca")
    assert mount == {
        "name": "webhook-client-ca",
        "mountPath": "/etc/inferops/webhook-client",
        "readOnly": True,
    }
    # Kopf does not watch the client CA file: a new bundle rolls the pods instead.
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/webhook-client-ca" in annotations
    notes = _chart().render(NON_DEFAULT, name=RELEASE, namespace=NAMESPACE)[
        "inferops/templates/NOTES.txt"
    ]
    assert "client certificates signed by the CA of ConfigMap" in notes


def test_a_client_ca_secret_is_mounted_by_its_key() -> None:
    values = {
        "webhook": {"clientAuth": {"caSecret": "apiserver-client-ca", "caSecretKey": "ca.pem"}}
    }
    docs = render(values)
    assert volume(docs, "webhook-client-ca") == {
        "name": "webhook-client-ca",
        "secret": {
            "secretName": "apiserver-client-ca",
            "items": [{"key": "ca.pem", "path": "ca.crt"}],
        },
    }
    args = build_parser().parse_args(container(docs)["args"])
    assert args.webhook_client_ca == "/etc/inferops/webhook-client/ca.crt"
    assert args.webhook_client_name == []
    assert not [c for c in by_kind(docs, "ConfigMap") if "client-ca" in c["metadata"]["name"]]


@pytest.mark.parametrize(
    ("client_auth", "message"),
    [
        (
            {"caBundle": client_ca_pem(), "caSecret": "s"},
            "webhook.clientAuth: give caBundle or caSecret, not both",
        ),
        ({"allowedNames": ["x"]}, "webhook.clientAuth.allowedNames needs caBundle or caSecret"),
    ],
)
def test_client_auth_values_that_cannot_work_are_refused(
    client_auth: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render_docs({"webhook": {"clientAuth": client_auth}})


def ingress_by_port(policy: dict[str, Any]) -> dict[int, list[dict[str, Any]] | None]:
    """port -> the peers allowed (None: any source), for each ingress rule."""
    rules = {}
    for rule in policy["spec"]["ingress"]:
        assert [p["protocol"] for p in rule["ports"]] == ["TCP"]
        rules[rule["ports"][0]["port"]] = rule.get("from")
    return rules


def test_the_operator_takes_traffic_only_on_the_webhook_and_metrics_ports() -> None:
    docs = render()
    policy = one(docs, "NetworkPolicy")
    assert policy["metadata"]["namespace"] == NAMESPACE
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["podSelector"]["matchLabels"] == selector
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # the operator must reach the API
    ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    assert ingress_by_port(policy) == {
        # No chart can know where the API server's calls come from: any source, unless
        # networkPolicy.webhook.from names it.
        ports["webhook"]: None,
        ports["metrics"]: [
            {
                "namespaceSelector": {},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }
        ],
    }
    assert ports["health"] not in ingress_by_port(policy)  # kubelet probes: from the node


def test_network_policy_sources_are_the_values() -> None:
    docs = render(NON_DEFAULT)
    assert ingress_by_port(one(docs, "NetworkPolicy")) == {8443: CONTROL_PLANE, 9191: SCRAPERS}
    any_scraper = {"networkPolicy": {"metrics": {"from": []}}}
    assert ingress_by_port(one(render(any_scraper), "NetworkPolicy"))[9090] is None


def test_network_policy_closes_what_is_not_served() -> None:
    docs = render({"webhook": {"enabled": False}, "metrics": {"enabled": False}})
    assert one(docs, "NetworkPolicy")["spec"]["ingress"] == []  # every port refuses
    assert by_kind(render({"networkPolicy": {"enabled": False}}), "NetworkPolicy") == []


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"webhook": {"clientAuth": {"caBundle": "not a certificate"}}}, "caBundle"),
        ({"webhook": {"clientAuth": {"caFile": "/x"}}}, "caFile"),
        ({"networkPolicy": {"webhook": {"from": {"ipBlock": {}}}}}, "from"),
        ({"networkPolicy": {"ingress": []}}, "ingress"),
    ],
)
def test_schema_refuses_bad_caller_values(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(helm.HelmValuesError) as info:
        _chart().validate_schema(values)
    assert fragment in str(info.value)
