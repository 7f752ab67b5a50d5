"""The Helm chart on the real control plane, and the operator under the chart's RBAC.

Helm's own SDK (helm-python-sdk, no helm binary) installs charts/inferops; the operator then
runs with a token of the chart's ServiceAccount (TokenRequest API), with the args of the
chart's Deployment, and reconciles the examples: whatever the RBAC lacks shows up as a 403.
The chart's webhook certificate is checked the way the API server checks it (caBundle,
service DNS name, path); the API server cannot reach a Service here (no pod network), so
the rendered webhook configuration selects no namespace. `helm upgrade` keeps the
certificate and updates the catalog. Everything cluster-scoped the chart made is removed
afterwards; the CRDs, adopted from the session's install, are handed back unchanged.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import socket
import ssl
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from k8s_helpers import Kubectl, read_crd, wait_for
from kubernetes import client
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

import inferops.handlers
from inferops.api.catalog import load_catalog
from inferops.api.names import GROUP, VERSION
from tests.cluster.operator_process import running_operator
from tests.s3server import free_port

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "inferops"
EXAMPLES = REPO / "examples"
RELEASE = "inferops-chart"  # fullname: the release name (it contains the chart's name)
OWN_CRDS = [
    f"{plural}.{GROUP}" for plural in ("aiapplications", "realtimeservices", "batchservices")
]
PEERING_CRDS = ["clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"]
HELM_LABEL = "app.kubernetes.io/managed-by"
HELM_ANNOTATIONS = ("meta.helm.sh/release-name", "meta.helm.sh/release-namespace")
# The API server here cannot reach a Service (no pod network): no namespace is selected.
NOWHERE = {"matchLabels": {"inferops.dev/chart-test-webhook": "never"}}


@dataclass
class Release:
    name: str
    namespace: str
    config: helm.Config
    api: Any
    external: bool  # a real cluster (kind) instead of the local control plane
    adopted: list[str] = field(default_factory=list)

    def install(self, values: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.config.install(str(CHART), self.name, values, namespace=self.namespace, timeout=60)
        )

    def upgrade(self, values: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.config.upgrade(str(CHART), self.name, values, namespace=self.namespace, timeout=60)
        )

    @property
    def core(self) -> Any:
        return client.CoreV1Api(self.api)


def crd_names(api: Any) -> set[str]:
    return {
        c.metadata.name
        for c in client.ApiextensionsV1Api(api).list_custom_resource_definition().items
    }


def adopt_crds(api: Any, name: str, namespace: str) -> tuple[list[str], bool]:
    """Hands the CRDs the session installed to the release (Helm's adoption metadata).

    Returns the adopted names, and False when another release owns them (a cluster where
    `make deploy` installed the chart): then this release leaves the CRDs alone."""
    ext = client.ApiextensionsV1Api(api)
    adopted = []
    for crd_name in OWN_CRDS:
        crd = read_crd(api, crd_name)
        if crd is None:
            continue
        owner = (crd.metadata.annotations or {}).get(HELM_ANNOTATIONS[0])
        if owner not in (None, name):
            return [], False
        ext.patch_custom_resource_definition(
            crd_name,
            {
                "metadata": {
                    "labels": {HELM_LABEL: "Helm"},
                    "annotations": {HELM_ANNOTATIONS[0]: name, HELM_ANNOTATIONS[1]: namespace},
                }
            },
        )
        adopted.append(crd_name)
    return adopted, True


def hand_back_crds(api: Any, names: list[str]) -> None:
    ext = client.ApiextensionsV1Api(api)
    for crd_name in names:
        ext.patch_custom_resource_definition(
            crd_name,
            {
                "metadata": {
                    "labels": {HELM_LABEL: None},
                    "annotations": dict.fromkeys((*HELM_ANNOTATIONS, "helm.sh/resource-policy")),
                }
            },
        )


def crd_state(api: Any, names: list[str]) -> str:
    states = []
    for crd_name in names:
        crd = read_crd(api, crd_name)
        if crd is None:
            continue
        conditions = [
            f"{c.type}={c.status} ({c.reason}: {c.message})" for c in crd.status.conditions or []
        ]
        states.append(f"{crd_name}: finalizers {crd.metadata.finalizers}, {conditions}")
    return "; ".join(states)


@pytest.fixture(scope="module")
def peering_crds(api_client: Any, control_plane: Any) -> Iterator[None]:
    """The chart's crds/ add Kopf's peering CRDs, and Helm never deletes a chart's crds/.

    They are removed once the module is done, not after every release: the API server
    deletes a CRD asynchronously (its cleanup finalizer first lists and deletes every
    instance) and on a loaded 2-core machine that has taken more than 30 s. On the tests'
    own control plane, which is thrown away, nothing waits for it; on a real cluster the
    module waits so that the cluster is left as it was found."""
    before = crd_names(api_client)
    yield
    created = sorted((crd_names(api_client) - before) & set(PEERING_CRDS))
    ext = client.ApiextensionsV1Api(api_client)
    for name in created:
        ext.delete_custom_resource_definition(name)
    if control_plane is None and created:
        try:
            wait_for(
                lambda: not set(created) & crd_names(api_client),
                timeout=180,
                what=f"{created} deleted",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {crd_state(api_client, created)}") from None


@pytest.fixture
def release(
    request: pytest.FixtureRequest,
    kubeconfig: Path,
    api_client: Any,
    control_plane: Any,
    peering_crds: None,
) -> Iterator[Release]:
    """A release namespace (PodSecurity `restricted` enforced) and a Helm config for it.

    Teardown: `helm uninstall`, then checks that nothing cluster-scoped of the release is
    left but the kept CRDs, which go back to how the session installed them."""
    external = control_plane is None
    if not external:
        request.getfixturevalue("kwok_nodes")  # Deployments get Ready (simulated) pods
    namespace = f"chart-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(
                name=namespace,
                labels={
                    "inferops-test": "1",
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            )
        )
    )
    config = helm.Config(kubeconfig_path=str(kubeconfig), namespace=namespace)
    rel = Release(RELEASE, namespace, config, api_client, external)
    try:
        yield rel
    finally:
        try:
            config.uninstall(rel.name, ignore_not_found=True, timeout=60)
            labelled = f"app.kubernetes.io/instance={rel.name}"
            rbac = client.RbacAuthorizationV1Api(api_client)
            left = [
                r.metadata.name
                for r in rbac.list_cluster_role(label_selector=labelled).items
                + rbac.list_cluster_role_binding(label_selector=labelled).items
                + client.AdmissionregistrationV1Api(api_client)
                .list_validating_webhook_configuration(label_selector=labelled)
                .items
            ]
            assert left == [], f"cluster-scoped objects left by helm uninstall: {left}"
            kept = crd_names(api_client)
            assert set(rel.adopted) <= kept, "helm uninstall deleted kept CRDs"
        finally:
            hand_back_crds(api_client, rel.adopted)
            config.close()
            core.delete_namespace(namespace)


def token_kubeconfig(
    admin: Path, api: Any, namespace: str, service_account: str, directory: Path
) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount (a TokenRequest token)."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    token = (
        client.CoreV1Api(api)
        .create_namespaced_service_account_token(service_account, namespace, request)
        .status.token
    )
    config = yaml.safe_load(admin.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    user = f"system:serviceaccount:{namespace}:{service_account}"
    path = directory / "sa.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": user, "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": user}}],
                "current-context": "sa",
            }
        )
    )
    return path


def local_args(deployment: Any, release: Release, directory: Path, webhook_port: int) -> list[str]:
    """The chart's operator args, with its mounted files and ports made local."""
    container = deployment.spec.template.spec.containers[0]
    config_map = release.core.read_namespaced_config_map(
        f"{release.name}-catalog", release.namespace
    )
    (directory / "catalog.yaml").write_text(config_map.data["catalog.yaml"])
    load_catalog(directory / "catalog.yaml")  # what the operator will read must be valid
    secret = release.core.read_namespaced_secret(f"{release.name}-webhook-tls", release.namespace)
    certs = directory / "webhook"
    certs.mkdir()
    for key, value in secret.data.items():
        (certs / key).write_bytes(base64.b64decode(value))
    local = {
        "--catalog": str(directory / "catalog.yaml"),
        "--webhook-cert-dir": str(certs),
        "--webhook-port": str(webhook_port),
        "--webhook-address": "127.0.0.1",
    }
    assert container.args[0] == "operator"
    args = []
    for arg in container.args[1:]:
        option, _, value = arg.partition("=")
        if option in ("--liveness", "--metrics-port"):
            continue  # running_operator picks free local ports
        args.append(f"{option}={local.get(option, value)}" if value else arg)
    return args


def post_admission(
    port: int, host: str, ca_bundle: bytes, path: str, obj: dict[str, Any]
) -> dict[str, Any]:
    """An AdmissionReview sent as the API server sends it: TLS verified against the
    webhook configuration's caBundle and the Service's DNS name."""
    context = ssl.create_default_context(cadata=ca_bundle.decode())
    resource = {"group": GROUP, "version": VERSION, "resource": "realtimeservices"}
    kind = {"group": GROUP, "version": VERSION, "kind": obj["kind"]}
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": kind,
            "resource": resource,
            "requestKind": kind,
            "requestResource": resource,
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {"username": "chart-test"},
            "object": obj,
            "oldObject": None,
            "dryRun": True,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }
    body = json.dumps(review).encode()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    response: dict[str, Any] = json.loads(payload)["response"]
    return response


def custom(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name
    )
    return obj


def current(obj: dict[str, Any]) -> dict[str, Any]:
    status = obj.get("status") or {}
    return status if status.get("observedGeneration") == obj["metadata"]["generation"] else {}


def apply_examples(kubectl: Kubectl, namespace: str, *names: str) -> None:
    files = [arg for name in names for arg in ("-f", str(EXAMPLES / name))]
    kubectl("apply", "-n", namespace, *files)


def external_values(release: Release) -> dict[str, Any]:
    """On a real cluster (kind), the small flavors of ci/kind-values.yaml: real pods."""
    if not release.external:
        return {}
    kind = yaml.safe_load((CHART / "ci" / "kind-values.yaml").read_text())
    return {"catalog": {"flavors": kind["catalog"]["flavors"]}}


def wait_for_examples(api: Any, namespace: str, external: bool) -> dict[str, Any]:
    """The iris AIApplication Normal and the RealTimeService iris-online Running."""
    timeout = 180 if external else 45

    def app_normal() -> bool:
        status = current(custom(api, namespace, "aiapplications", "iris"))
        return [v.get("phase") for v in status.get("versions", [])] == ["Normal", "Normal"]

    wait_for(app_normal, timeout=timeout, what="AIApplication iris Normal")

    def running() -> dict[str, Any] | None:
        status = current(custom(api, namespace, "realtimeservices", "iris-online"))
        return status if status.get("phase") == "Running" else None

    status: dict[str, Any] = wait_for(running, timeout=timeout, what="iris-online Running")
    return status


def batch_handled() -> bool:
    """Whether this operator build reconciles BatchServices (their handlers registered)."""
    return "batch" in getattr(inferops.handlers, "__all__", [])


@contextmanager
def explained_by(log: Path) -> Iterator[None]:
    """A failed wait shows the operator's complaints (a 403 names the missing rule)."""
    try:
        yield
    except AssertionError as exc:
        lines = [
            line for line in log.read_text().splitlines() if DENIED.search(line) or "rror" in line
        ]
        raise AssertionError(f"{exc}\noperator log ({log}):\n" + "\n".join(lines[-20:])) from None


DENIED = re.compile(r"\b403\b|[Ff]orbidden|Not enough permissions")
TERMINATING = re.compile(r"NamespaceTerminating|namespace \S+ (because it )?is being terminated")


def check_operator_log(log: Path) -> None:
    """No request of the operator was denied (Kopf only warns when it may not watch CRDs or
    Namespaces, so its log is read too)."""
    # A cluster-wide operator also meets other tests' namespaces while they terminate; the
    # API server refuses new objects there with a 403 that says so, which is not RBAC.
    denied = [
        line
        for line in log.read_text().splitlines()
        if DENIED.search(line) and not TERMINATING.search(line)
    ]
    assert denied == [], "the chart's RBAC is not enough:\n" + "\n".join(denied[:20])


def wait_deployment_available(release: Release, replicas: int) -> Any:
    apps = client.AppsV1Api(release.api)

    def available() -> Any:
        dep = apps.read_namespaced_deployment(release.name, release.namespace)
        ready = dep.status.available_replicas or 0
        return dep if ready == replicas and dep.spec.replicas == replicas else None

    return wait_for(available, timeout=45, what=f"Deployment {release.name} available")


def check_installed(release: Release, own_crds: bool, replicas: int) -> tuple[Any, bytes]:
    """The CRDs (adopted, kept on uninstall), a Deployment whose pods passed PodSecurity
    `restricted` admission, and the webhook Secret behind the caBundle."""
    if own_crds:
        ext = client.ApiextensionsV1Api(release.api)
        for crd_name in OWN_CRDS:
            meta = ext.read_custom_resource_definition(crd_name).metadata
            assert meta.annotations["meta.helm.sh/release-name"] == release.name
            assert meta.annotations["helm.sh/resource-policy"] == "keep"
    assert set(PEERING_CRDS) <= crd_names(release.api)
    rbac = client.RbacAuthorizationV1Api(release.api)
    selector = f"app.kubernetes.io/instance={release.name}"
    for role in (
        rbac.list_cluster_role(label_selector=selector).items
        + rbac.list_role_for_all_namespaces(label_selector=selector).items
    ):
        for rule in role.rules:
            words = [*(rule.api_groups or []), *rule.resources, *rule.verbs]
            assert not any("*" in w for w in words), f"{role.metadata.name}: {rule}"
    deployment = wait_deployment_available(release, replicas)
    secret = release.core.read_namespaced_secret(f"{release.name}-webhook-tls", release.namespace)
    ca_bundle = base64.b64decode(secret.data["ca.crt"])
    assert {base64.b64decode(w.client_config.ca_bundle) for w in webhooks_of(release)} == {
        ca_bundle
    }
    return deployment, ca_bundle


def webhooks_of(release: Release) -> list[Any]:
    return list(
        client.AdmissionregistrationV1Api(release.api)
        .read_validating_webhook_configuration(release.name)
        .webhooks
    )


def check_service_account(sa_config: Path, release: Release, namespace: str) -> None:
    """The kubeconfig is the ServiceAccount's, and it is no admin (no Secrets, for one)."""
    sa_api = k8s_config.new_client_from_config(config_file=str(sa_config))
    review = client.AuthenticationV1Api(sa_api).create_self_subject_review(
        client.V1SelfSubjectReview()
    )
    assert (
        review.status.user_info.username
        == f"system:serviceaccount:{release.namespace}:{release.name}"
    )
    with pytest.raises(ApiException) as denied:
        client.CoreV1Api(sa_api).list_namespaced_secret(namespace)
    assert denied.value.status == 403


def check_webhook(release: Release, namespace: str, port: int, ca_bundle: bytes) -> None:
    """The webhook as the API server would call it: the chart's CA, the Service's name."""
    path = next(
        w.client_config.service.path
        for w in webhooks_of(release)
        if w.name == f"realtimeservices.{GROUP}"
    )
    rts = yaml.safe_load((EXAMPLES / "iris-realtime.yaml").read_text())
    rts["metadata"] |= {"name": "another", "namespace": namespace}
    host = f"{release.name}-webhook.{release.namespace}.svc"
    assert post_admission(port, host, ca_bundle, path, rts)["allowed"] is True
    bad = copy.deepcopy(rts)
    bad["spec"]["versions"][0]["specification"] = "cpu.64u"
    refused = post_admission(port, host, ca_bundle, path, bad)
    assert refused["allowed"] is False
    assert (
        "spec.versions[0].specification: unknown flavor 'cpu.64u'" in refused["status"]["message"]
    )


def check_upgrade(
    release: Release, values: dict[str, Any], deployment: Any, ca_bundle: bytes
) -> None:
    """A new catalog reaches the ConfigMap and rolls the pods; the webhook certificate
    (looked up) and so the caBundle stay."""
    secret = release.core.read_namespaced_secret(f"{release.name}-webhook-tls", release.namespace)
    upgraded = release.upgrade(
        values | {"catalog": {"quotas": {"realTimeServicesPerNamespace": 5}}}
    )
    assert upgraded["status"] == "deployed" and upgraded["revision"] == 2
    assert (
        release.core.read_namespaced_secret(f"{release.name}-webhook-tls", release.namespace).data
        == secret.data
    )
    assert {base64.b64decode(w.client_config.ca_bundle) for w in webhooks_of(release)} == {
        ca_bundle
    }
    config_map = release.core.read_namespaced_config_map(
        f"{release.name}-catalog", release.namespace
    )
    assert "realTimeServicesPerNamespace: 5" in config_map.data["catalog.yaml"]
    rolled = client.AppsV1Api(release.api).read_namespaced_deployment(
        release.name, release.namespace
    )
    checksum = "checksum/catalog"
    assert (
        rolled.spec.template.metadata.annotations[checksum]
        != deployment.spec.template.metadata.annotations[checksum]
    )


def test_chart_installs_and_the_operator_works_under_its_rbac(
    release: Release, namespace: str, kubeconfig: Path, kubectl: Kubectl, api_client: Any
) -> None:
    t0 = time.monotonic()
    release.adopted, own_crds = adopt_crds(api_client, release.name, release.namespace)
    replicas = 0 if release.external else 1  # never a second real operator on a real cluster
    values = {
        "replicaCount": replicas,
        "crds": {"install": own_crds},
        "webhook": {"namespaceSelector": NOWHERE},
    } | external_values(release)
    installed = release.install(values)
    assert installed["status"] == "deployed" and installed["revision"] == 1
    deployment, ca_bundle = check_installed(release, own_crds, replicas)
    t_install = time.monotonic() - t0

    # The operator with the ServiceAccount's token and the Deployment's args.
    work = Path(tempfile.mkdtemp(prefix="inferops-chart-"))
    sa_config = token_kubeconfig(kubeconfig, api_client, release.namespace, release.name, work)
    check_service_account(sa_config, release, namespace)
    webhook_port = free_port()
    args = local_args(deployment, release, work, webhook_port)
    assert not any(a.startswith("--namespace") for a in args)  # cluster-wide
    if release.external:  # leave other namespaces to the operator `make deploy` installed
        args.append(f"--namespace={namespace}")
    with running_operator(sa_config, [], args) as operator, explained_by(operator.log):
        apply_examples(kubectl, namespace, "iris-application.yaml", "iris-realtime.yaml")
        status = wait_for_examples(api_client, namespace, release.external)
        assert status["traffic"] == "iris:1.0.0=70,iris:2.0.0=30"
        assert status["ready"] == "3/3"
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        if batch_handled():
            # The example's storage.secretRef: a Secret marked usable by services, whose
            # label the operator reads under the chart's RBAC (metadata only).
            client.CoreV1Api(api_client).create_namespaced_secret(
                namespace,
                {
                    "metadata": {
                        "name": "object-storage",
                        "labels": {"serving.inferops.dev/usable": "true"},
                    },
                    "stringData": {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"},
                },
            )
            apply_examples(kubectl, namespace, "iris-batch-folder.yaml")
            wait_for(
                lambda: (
                    client.BatchV1Api(api_client)
                    .list_namespaced_job(
                        namespace,
                        label_selector="serving.inferops.dev/owner-name=iris-batch-folder",
                    )
                    .items
                ),
                timeout=30,
                what="the BatchService's Job",
            )
        check_webhook(release, namespace, webhook_port, ca_bundle)
        check_operator_log(operator.log)
    t_operator = time.monotonic() - t0 - t_install

    check_upgrade(release, values, deployment, ca_bundle)
    if own_crds:
        assert set(OWN_CRDS) <= crd_names(api_client)
    print(
        f"[chart] install {t_install:.1f}s, operator {t_operator:.1f}s, "
        f"upgrade {time.monotonic() - t0 - t_install - t_operator:.1f}s"
    )


def test_namespaced_ha_release_and_its_roles(
    release: Release, namespace: str, kubeconfig: Path, kubectl: Kubectl, api_client: Any
) -> None:
    """watchNamespaces: Roles instead of a ClusterRole; peering: a KopfPeering in the
    namespace that the operator keeps its liveness in."""
    release.adopted, own_crds = adopt_crds(api_client, release.name, release.namespace)
    replicas = 0 if release.external else 2
    values = {
        "replicaCount": replicas,
        "watchNamespaces": [namespace],
        "peering": {"enabled": True},
        "crds": {"install": own_crds},
        "webhook": {"namespaceSelector": NOWHERE},
        "metrics": {"enabled": False},
    } | external_values(release)
    release.install(values)
    rbac = client.RbacAuthorizationV1Api(api_client)
    assert rbac.read_namespaced_role(release.name, namespace).rules
    assert [
        r.metadata.name
        for r in rbac.list_cluster_role(
            label_selector=f"app.kubernetes.io/instance={release.name}"
        ).items
    ] == [f"{release.name}-cluster"]
    deployment = wait_deployment_available(release, replicas)
    work = Path(tempfile.mkdtemp(prefix="inferops-chart-"))
    sa_config = token_kubeconfig(kubeconfig, api_client, release.namespace, release.name, work)
    args = local_args(deployment, release, work, free_port())
    assert f"--namespace={namespace}" in args and f"--peering={release.name}" in args
    with running_operator(sa_config, [], args) as operator, explained_by(operator.log):
        apply_examples(kubectl, namespace, "iris-application.yaml", "iris-realtime.yaml")
        wait_for_examples(api_client, namespace, release.external)
        peering = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            "kopf.dev", "v1", namespace, "kopfpeerings", release.name
        )
        assert peering.get("status"), "the operator keeps its liveness in the KopfPeering"
        check_operator_log(operator.log)
