"""Admission webhooks and quotas on the real API server.

The API server calls the operator's webhook over TLS on loopback, through a
ValidatingWebhookConfiguration limited to the test's namespace, with the CA bundle of the
certificate the operator serves. The test control plane gives the API server a client
certificate for webhooks (tests/cluster/controlplane.py: an AdmissionConfiguration with a
WebhookAdmissionConfiguration kubeconfig), and the operator requires it
(--webhook-client-ca): the API server passes, a caller without that certificate is refused
in the TLS handshake. `open_webhook` is the operator of a cluster whose API server cannot
be given a certificate (managed clusters): forged reviews reach it, and get nothing.
"""

from __future__ import annotations

import base64
import concurrent.futures
import copy
import http.client
import json
import socket
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from controlplane import WEBHOOK_CLIENT_NAME
from k8s_helpers import Kubectl, printed, wait_for
from kubernetes import client
from kubernetes.client.rest import ApiException

from inferops.api.names import GROUP, VERSION
from inferops.certs import ServingCert, client_certificate, self_signed
from inferops.handlers.admission import GRACE_SECONDS
from tests.cluster.operator_process import running_operator
from tests.s3server import free_port
from tests.unit.rules_table import app, bs, rts, version

PLURALS = {
    "AIApplication": "aiapplications",
    "RealTimeService": "realtimeservices",
    "BatchService": "batchservices",
}


@dataclass(frozen=True)
class Served:
    """The operator's webhook server, registered for `namespace`."""

    namespace: str
    port: int
    serving_ca: Path  # what the API server trusts (the caBundle)
    client_ca: Path | None  # what the operator trusts of its callers; None: anyone

    @property
    def detailed(self) -> bool:
        """Whether refusals may say what the namespace holds (an authenticated caller)."""
        return self.client_ca is not None


@contextmanager
def serving(
    kubeconfig: Path, namespace: str, api_client: Any, client_ca: Path | None
) -> Iterator[Served]:
    """The operator with its webhooks, registered for this namespace only."""
    certs = self_signed(Path(tempfile.mkdtemp(prefix="inferops-wh-")), ["127.0.0.1"])
    port = free_port()
    name = f"inferops-{namespace}"
    admission = client.AdmissionregistrationV1Api(api_client)
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": f"{plural}.{GROUP}",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [plural],
                    }
                ],
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}/{plural}",
                    "caBundle": base64.b64encode(certs.cafile.read_bytes()).decode(),
                },
            }
            for plural in PLURALS.values()
        ],
    }
    extra = [
        "--webhook-port",
        str(port),
        "--webhook-address",
        "127.0.0.1",
        "--webhook-cert-dir",
        str(certs.cafile.parent),
    ]
    if client_ca is not None:
        extra += ["--webhook-client-ca", str(client_ca)]
        extra += ["--webhook-client-name", WEBHOOK_CLIENT_NAME]
    with running_operator(kubeconfig, [namespace], extra):
        wait_for(lambda: port_open(port), timeout=30, what="webhook server listening")
        admission.create_validating_webhook_configuration(config)
        try:
            yield Served(namespace, port, certs.cafile, client_ca)
        finally:
            admission.delete_validating_webhook_configuration(name)


@pytest.fixture
def served(
    kubeconfig: Path, namespace: str, api_client: Any, control_plane: Any
) -> Iterator[Served]:
    """Client-authenticated: the test control plane's API server presents its certificate.
    (An external cluster's API server has none for us: there the webhook is open.)"""
    client_ca = control_plane.webhook_client_ca if control_plane is not None else None
    with serving(kubeconfig, namespace, api_client, client_ca) as webhook:
        yield webhook


@pytest.fixture
def webhook(served: Served) -> str:
    return served.namespace


@pytest.fixture
def open_webhook(kubeconfig: Path, namespace: str, api_client: Any) -> Iterator[Served]:
    """No client CA: any caller that reaches the port is served (managed clusters)."""
    with serving(kubeconfig, namespace, api_client, None) as webhook:
        yield webhook


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def create(api_client: Any, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    api = client.CustomObjectsApi(api_client)
    result: dict[str, Any] = api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS[obj["kind"]], copy.deepcopy(obj)
    )
    return result


def refused(api_client: Any, namespace: str, obj: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as info:
        create(api_client, namespace, obj)
    return str(info.value.body)


def annotate(api_client: Any, namespace: str, key: str, value: str) -> None:
    client.CoreV1Api(api_client).patch_namespace(
        namespace, {"metadata": {"annotations": {f"serving.inferops.dev/{key}": value}}}
    )


def stopped(name: str) -> dict[str, Any]:
    return rts(version("1.0.0", 100), name=name, stopped=True)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            rts(version("1.0.0", 100, specification="cpu.64u")),
            "RealTimeService/svc: spec.versions[0].specification: unknown flavor 'cpu.64u'",
        ),
        (
            rts(version("3.0.0", 100)),
            "RealTimeService/svc: spec.versions[0].version: application 'iris' has no version '3.0.0'",
        ),
        (
            rts(version("1.0.0", 70, specification="free.1u2g"), version("2.0.0", 30)),
            "free flavor 'free.1u2g' allows a single version; this service has 2",
        ),
        (
            rts(version("1.0.0", 100), websocket=True),
            "RealTimeService/svc: spec.websocket: version '1.0.0' of application 'iris' does not "
            "speak WebSocket",
        ),
        (
            bs(specification="gpu.1x"),
            "BatchService/job: spec.specification: batch services run in the public pool only",
        ),
        (
            bs(requestPath="/predict"),
            "BatchService/job: spec.requestPath: '/predict' is not one of the app's API urls",
        ),
        (
            app("empty", versions=()) | {"spec": {"versions": [{"version": "1", "image": "m:1"}]}},
            "AIApplication/empty: spec.versions[0].apis: at least one API is required",
        ),
    ],
)
def test_invalid_specs_are_refused_with_the_field(
    api_client: Any, webhook: str, obj: dict[str, Any], message: str
) -> None:
    create(api_client, webhook, app("iris"))
    assert message in refused(api_client, webhook, obj)


def test_kubectl_shows_the_refusal_and_warnings(
    kubectl: Kubectl, webhook: str, tmp_path: Path
) -> None:
    import yaml

    (tmp_path / "app.yaml").write_text(yaml.safe_dump(app("iris")))
    kubectl("apply", "-n", webhook, "-f", str(tmp_path / "app.yaml"))
    bad = rts(version("1.0.0", 100, specification="cpu.64u"))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    out = kubectl(
        "apply", "-n", webhook, "-f", str(tmp_path / "bad.yaml"), check=False, stderr=True
    )
    assert "denied the request" in out
    assert "spec.versions[0].specification: unknown flavor 'cpu.64u'" in out
    risky = rts(version("1.0.0", 100, env=[{"name": "API_TOKEN", "value": "abc"}]), stopped=True)
    (tmp_path / "risky.yaml").write_text(yaml.safe_dump(risky))
    out = kubectl("apply", "-n", webhook, "-f", str(tmp_path / "risky.yaml"), stderr=True)
    assert (
        "Warning: RealTimeService/svc: spec.versions[0].env[0]: API_TOKEN has a plain value" in out
    )


def test_twenty_first_realtime_service_is_refused(api_client: Any, served: Served) -> None:
    webhook = served.namespace
    create(api_client, webhook, app("iris"))
    for i in range(20):
        create(api_client, webhook, stopped(f"s{i:02d}"))
    message = refused(api_client, webhook, stopped("s20"))
    limit = "20 " if served.detailed else ""
    assert f"quota of {limit}real-time services in this namespace is used" in message
    assert "Stopped and Abnormal services count too" in message


def test_concurrent_creates_never_exceed_the_quota(api_client: Any, webhook: str) -> None:
    create(api_client, webhook, app("iris"))
    annotate(api_client, webhook, "quota-realtime-services", "3")

    def attempt(i: int) -> bool:
        try:
            create(api_client, webhook, stopped(f"c{i:02d}"))
            return True
        except ApiException:
            return False

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(attempt, range(10)))
    assert sum(results) == 3
    listed = client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        GROUP, VERSION, webhook, "realtimeservices"
    )["items"]
    assert len(listed) == 3


def test_public_instance_quota(api_client: Any, served: Served) -> None:
    webhook = served.namespace
    create(api_client, webhook, app("iris"))
    annotate(api_client, webhook, "quota-public-instances", "4")
    create(api_client, webhook, rts(version("1.0.0", 100, computeNodes=3), name="a", stopped=True))
    message = refused(
        api_client, webhook, rts(version("1.0.0", 100, computeNodes=2), name="b", stopped=True)
    )
    limit = "of 4 in this namespace: 3 in use" if served.detailed else "of this namespace is used"
    assert f"public-pool instance quota {limit}" in message
    assert "this service asks for 2" in message
    # Dedicated pools do not count.
    create(
        api_client,
        webhook,
        rts(version("1.0.0", 100, computeNodes=2), name="c", resourcePool="pool-a", stopped=True),
    )


def test_without_the_webhook_the_handlers_enforce_quotas(
    api_client: Any, kubeconfig: Path, namespace: str, kwok_nodes: list[str], kubectl: Kubectl
) -> None:
    custom = client.CustomObjectsApi(api_client)
    apps_api = client.AppsV1Api(api_client)
    annotate(api_client, namespace, "quota-realtime-services", "1")
    with running_operator(kubeconfig, [namespace]):
        create(api_client, namespace, app("iris"))
        create(api_client, namespace, rts(version("1.0.0", 100), name="first"))
        create(api_client, namespace, rts(version("1.0.0", 100), name="second"))

        def status(name: str) -> dict[str, Any]:
            obj = custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "realtimeservices", name
            )
            return dict(obj.get("status") or {})

        wait_for(
            lambda: status("second").get("phase") == "Failed", timeout=60, what="second Failed"
        )
        ready = next(c for c in status("second")["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "QuotaExceeded"
        assert "quota of 1 real-time services" in ready["message"]
        shown = printed(kubectl, namespace, "rts", "second")
        assert (shown["PHASE"], shown["REASON"]) == ("Failed", "QuotaExceeded")
        assert "quota of 1 real-time services" in shown["MESSAGE"]
        wait_for(
            lambda: status("first").get("phase") == "Running", timeout=90, what="first Running"
        )
        owners = {
            d.metadata.labels["serving.inferops.dev/owner-name"]
            for d in apps_api.list_namespaced_deployment(namespace).items
        }
        assert owners == {"first"}  # nothing for the service over quota
        custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "realtimeservices", "first"
        )
        wait_for(
            lambda: status("second").get("phase") == "Running",
            timeout=120,
            what="second recovers once room appears",
        )


# ---- who calls the webhook ---------------------------------------------------------------


def forged_review(namespace: str, obj: dict[str, Any], **request: Any) -> dict[str, Any]:
    """An AdmissionReview as the API server would send it, for a CREATE of `obj`."""
    body = copy.deepcopy(obj)
    body["metadata"].setdefault("namespace", namespace)
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "forged",
            "kind": {"group": GROUP, "version": VERSION, "kind": obj["kind"]},
            "resource": {"group": GROUP, "version": VERSION, "resource": PLURALS[obj["kind"]]},
            "requestKind": {"group": GROUP, "version": VERSION, "kind": obj["kind"]},
            "requestResource": {
                "group": GROUP,
                "version": VERSION,
                "resource": PLURALS[obj["kind"]],
            },
            "name": obj["metadata"]["name"],
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:attacker:default"},
            "object": body,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
            **request,
        },
    }


def post_review(
    webhook: Served, review: dict[str, Any], client_cert: ServingCert | None = None
) -> dict[str, Any]:
    """What a pod that can reach the webhook's port gets for a review it sends itself."""
    context = ssl.create_default_context(cafile=str(webhook.serving_ca))
    if client_cert is not None:
        context.load_cert_chain(client_cert.certfile, client_cert.keyfile)
    kind = review["request"]["kind"]["kind"]
    connection = http.client.HTTPSConnection("127.0.0.1", webhook.port, context=context, timeout=10)
    try:
        connection.request(
            "POST",
            f"/{PLURALS[kind]}",
            json.dumps(review),
            {"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        assert response.status == 200, response.read()
        answer: dict[str, Any] = json.loads(response.read())["response"]
        return answer
    finally:
        connection.close()


def test_only_the_api_servers_certificate_gets_through(
    api_client: Any, served: Served, tmp_path: Path
) -> None:
    """The API server's calls carry its client certificate and pass (every test above runs
    through them); a caller without one, or with a certificate of another CA, is refused
    in the TLS handshake and never gets to send its review."""
    if served.client_ca is None:
        pytest.skip("an external cluster's API server has no webhook client certificate here")
    create(api_client, served.namespace, app("iris"))  # the real API server: admitted
    forger = client_certificate(tmp_path, WEBHOOK_CLIENT_NAME)  # the right name, another CA
    review = forged_review(served.namespace, stopped("forged"))
    for cert in (None, forger):
        with pytest.raises((ssl.SSLError, ConnectionError)) as refused:
            post_review(served, review, cert)
        assert not isinstance(refused.value, ssl.SSLCertVerificationError)  # ours was fine
        assert not isinstance(refused.value, ConnectionRefusedError)  # it is listening


def test_forged_creates_hold_no_quota_after_the_grace(
    api_client: Any, open_webhook: Served
) -> None:
    """20 forged CREATE reviews, each admitted, never become objects: once the grace is
    over a real create passes (they used to refuse every create for 60 s, again and again)."""
    namespace = open_webhook.namespace
    create(api_client, namespace, app("iris"))
    for i in range(20):
        review = forged_review(namespace, stopped(f"forged-{i:02d}"))
        assert post_review(open_webhook, review)["allowed"] is True

    def real_create() -> bool:
        try:
            create(api_client, namespace, stopped("real"))
            return True
        except ApiException as exc:
            if "quota" not in str(exc.body):  # any other refusal is a failure
                raise
            return False

    wait_for(real_create, timeout=GRACE_SECONDS + 10, what="a real create after the grace")


def test_a_forged_review_learns_nothing_of_the_namespace(
    api_client: Any, open_webhook: Served
) -> None:
    """A review for a namespace the caller has nothing to do with gets allowed or denied
    for its own object, never the namespace's versions, limits or usage."""
    namespace = open_webhook.namespace
    create(api_client, namespace, app("iris"))
    annotate(api_client, namespace, "quota-realtime-services", "1")
    create(api_client, namespace, stopped("first"))
    unknown = post_review(open_webhook, forged_review(namespace, rts(version("9.9.9", 100))))
    message = unknown["status"]["message"]
    assert unknown["allowed"] is False and "has no version '9.9.9'" in message
    assert "1.0.0" not in message and "2.0.0" not in message
    over = post_review(open_webhook, forged_review(namespace, stopped("second")))
    message = over["status"]["message"]
    assert over["allowed"] is False and "quota of real-time services" in message
    assert "of 1" not in message
    # The review's namespace is another than its object's: refused before any look-up.
    elsewhere = forged_review("default", rts(version("9.9.9", 100)) | {"metadata": {"name": "x"}})
    elsewhere["request"]["object"]["metadata"]["namespace"] = namespace
    answer = post_review(open_webhook, elsewhere)
    assert answer["allowed"] is False
    assert answer["status"]["message"] == "the object's namespace is not the review's"
