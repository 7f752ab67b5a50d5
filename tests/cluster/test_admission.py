"""Admission webhooks and quotas on the real API server.

The API server calls the operator's webhook over TLS on loopback, through a
ValidatingWebhookConfiguration limited to the test's namespace, with the CA bundle of the
certificate the operator serves.
"""

from __future__ import annotations

import base64
import concurrent.futures
import copy
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_helpers import Kubectl, wait_for
from kubernetes import client
from kubernetes.client.rest import ApiException

from inferops.api.names import GROUP, VERSION
from inferops.certs import self_signed
from tests.cluster.operator_process import running_operator
from tests.s3server import free_port
from tests.unit.rules_table import app, bs, rts, version

PLURALS = {
    "AIApplication": "aiapplications",
    "RealTimeService": "realtimeservices",
    "BatchService": "batchservices",
}


@pytest.fixture
def webhook(kubeconfig: Path, namespace: str, api_client: Any) -> Iterator[str]:
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
    with running_operator(kubeconfig, [namespace], extra):
        wait_for(lambda: port_open(port), timeout=30, what="webhook server listening")
        admission.create_validating_webhook_configuration(config)
        try:
            yield namespace
        finally:
            admission.delete_validating_webhook_configuration(name)


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


def test_twenty_first_realtime_service_is_refused(api_client: Any, webhook: str) -> None:
    create(api_client, webhook, app("iris"))
    for i in range(20):
        create(api_client, webhook, stopped(f"s{i:02d}"))
    message = refused(api_client, webhook, stopped("s20"))
    assert "quota of 20 real-time services in this namespace is used" in message
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


def test_public_instance_quota(api_client: Any, webhook: str) -> None:
    create(api_client, webhook, app("iris"))
    annotate(api_client, webhook, "quota-public-instances", "4")
    create(api_client, webhook, rts(version("1.0.0", 100, computeNodes=3), name="a", stopped=True))
    message = refused(
        api_client, webhook, rts(version("1.0.0", 100, computeNodes=2), name="b", stopped=True)
    )
    assert "public-pool instance quota of 4" in message
    # Dedicated pools do not count.
    create(
        api_client,
        webhook,
        rts(version("1.0.0", 100, computeNodes=2), name="c", resourcePool="pool-a", stopped=True),
    )


def test_without_the_webhook_the_handlers_enforce_quotas(
    api_client: Any, kubeconfig: Path, namespace: str, kwok_nodes: list[str]
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
