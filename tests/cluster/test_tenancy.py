"""Tenancy on the real API server, through the operator's webhook: the Secrets a service may
name, and updates to a service after the catalog lost its flavor.

The operator runs twice on the same webhook address: first with the built-in catalog, then
with a catalog without cpu.4u8g, as after an administrator removed a flavor that running
services use.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_helpers import Kubectl, wait_for
from kubernetes import client

from inferops.api.catalog import default_catalog
from inferops.api.names import GROUP, LABEL_USABLE, VERSION
from inferops.certs import ServingCert, self_signed
from tests.cluster.operator_process import running_operator
from tests.cluster.test_admission import PLURALS, create, port_open, refused
from tests.s3server import free_port
from tests.unit.rules_table import app, rts, version

SECRET_ENV = [{"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]


@contextlib.contextmanager
def webhook_config(
    api_client: Any, namespace: str, port: int, certs: ServingCert
) -> Iterator[None]:
    """The three validating webhooks, for this namespace only, at 127.0.0.1:port."""
    admission = client.AdmissionregistrationV1Api(api_client)
    name = f"inferops-tenancy-{namespace}"
    admission.create_validating_webhook_configuration(
        {
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
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": namespace}
                    },
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
    )
    try:
        yield
    finally:
        admission.delete_validating_webhook_configuration(name)


@contextlib.contextmanager
def operator_with_webhook(
    kubeconfig: Path, namespace: str, port: int, certs: ServingCert, catalog: Path | None = None
) -> Iterator[None]:
    extra = [
        "--webhook-port",
        str(port),
        "--webhook-address",
        "127.0.0.1",
        "--webhook-cert-dir",
        str(certs.cafile.parent),
    ]
    if catalog is not None:
        extra += ["--catalog", str(catalog)]
    with running_operator(kubeconfig, [namespace], extra):
        wait_for(lambda: port_open(port), timeout=30, what="webhook server listening")
        yield


def service(api_client: Any, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "realtimeservices", name
    )
    return found


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


@pytest.mark.timeout(300)
def test_secrets_must_be_marked_and_a_lost_flavor_refuses_no_unrelated_update(
    api_client: Any,
    kubeconfig: Path,
    kubectl: Kubectl,
    namespace: str,
    kwok_nodes: list[str],
    tmp_path: Path,
) -> None:
    certs = self_signed(Path(tempfile.mkdtemp(prefix="inferops-wh-")), ["127.0.0.1"])
    port = free_port()
    core = client.CoreV1Api(api_client)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "db"}, "stringData": {"password": "hunter2"}}
    )
    leaky = rts(version("1.0.0", 100, env=SECRET_ENV), name="leaky", stopped=True)
    running = rts(version("1.0.0", 100, specification="cpu.4u8g"), name="svc", stopped=True)
    without = default_catalog().model_dump(by_alias=True, exclude_none=True)
    without["flavors"] = [f for f in without["flavors"] if f["name"] != "cpu.4u8g"]
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(without))

    with webhook_config(api_client, namespace, port, certs):
        with operator_with_webhook(kubeconfig, namespace, port, certs):
            create(api_client, namespace, app("iris"))
            message = json.loads(refused(api_client, namespace, copy.deepcopy(leaky)))["message"]
            # (worded alike for a missing Secret while the webhook cannot authenticate
            # the API server: see handlers/admission.py)
            assert "RealTimeService/leaky: spec.versions[0].env[0]: Secret 'db' is not" in message
            assert f'label it {LABEL_USABLE}="true"' in message
            assert "hunter2" not in message
            core.patch_namespaced_secret(
                "db", namespace, {"metadata": {"labels": {LABEL_USABLE: "true"}}}
            )
            create(api_client, namespace, leaky)
            create(api_client, namespace, running)
            wait_for(
                lambda: (
                    service(api_client, namespace, "svc").get("status", {}).get("phase")
                    == "Stopped"
                ),
                timeout=60,
                what="svc Stopped (its Deployments applied)",
            )

        # The administrator removes cpu.4u8g from the catalog.
        with operator_with_webhook(kubeconfig, namespace, port, certs, catalog):
            name = "realtimeservice/svc"
            out = kubectl(
                "annotate", "-n", namespace, name, "argocd.argoproj.io/tracking-id=a", stderr=True
            )
            assert "unknown flavor 'cpu.4u8g'" in out and "which is accepted" in out, out
            patch = json.dumps({"spec": {"stopped": False}})
            kubectl("patch", "-n", namespace, name, "--type=merge", "-p", patch)
            # Naming an unknown flavor anew is this update's own problem.
            bad = json.dumps(
                {"spec": {"versions": [version("1.0.0", 100, specification="cpu.64u")]}}
            )
            out = kubectl(
                "patch", "-n", namespace, name, "--type=merge", "-p", bad, check=False, stderr=True
            )
            assert "denied the request" in out and "unknown flavor 'cpu.64u'" in out, out

            def conflicted() -> bool:
                found = conditions(service(api_client, namespace, "svc")).get("CatalogConflict")
                return bool(found) and found["status"] == "True"

            wait_for(conflicted, timeout=60, what="CatalogConflict on svc")
            obj = service(api_client, namespace, "svc")
            assert obj["status"]["phase"] != "Failed", obj["status"]
            assert conditions(obj)["CatalogConflict"]["reason"] == "CatalogChanged"
            # A label removed from the Secret: the service using it is blocked, its update
            # (a Kopf annotation) still passes.
            core.patch_namespaced_secret(
                "db", namespace, {"metadata": {"labels": {LABEL_USABLE: None}}}
            )
            kubectl("annotate", "-n", namespace, "realtimeservice/leaky", "note=1")


@pytest.mark.timeout(300)
def test_without_the_webhook_the_handlers_wait_for_the_secret_to_be_marked(
    api_client: Any, kubeconfig: Path, namespace: str, kwok_nodes: list[str]
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "db"}, "stringData": {"password": "hunter2"}}
    )
    with running_operator(kubeconfig, [namespace]):
        create(api_client, namespace, app("iris"))
        create(api_client, namespace, rts(version("1.0.0", 100, env=SECRET_ENV), stopped=True))

        def ready_reason() -> str | None:
            found = conditions(service(api_client, namespace, "svc")).get("Ready") or {}
            return found.get("reason")

        wait_for(lambda: ready_reason() == "SecretNotUsable", timeout=60, what="blocked")
        obj = service(api_client, namespace, "svc")
        assert obj["status"]["phase"] == "Failed"
        assert (
            "spec.versions[0].env[0]: Secret 'db' is not marked usable" in obj["status"]["message"]
        )
        apps_api = client.AppsV1Api(api_client)
        assert apps_api.list_namespaced_deployment(namespace).items == []
        core.patch_namespaced_secret(
            "db", namespace, {"metadata": {"labels": {LABEL_USABLE: "true"}}}
        )
        wait_for(
            lambda: service(api_client, namespace, "svc")["status"].get("phase") == "Stopped",
            timeout=90,
            what="the service deployed once the Secret is marked (retried every 30 s)",
        )
