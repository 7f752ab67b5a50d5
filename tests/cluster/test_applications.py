"""AIApplication statuses written by the real operator on the real API server."""

from __future__ import annotations

import copy
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_helpers import wait_for
from kubernetes import client

from inferops.api.names import GROUP, VERSION
from tests.cluster.operator_process import Operator, running_operator
from tests.unit.rules_table import app

PLURAL = "aiapplications"


@pytest.fixture
def operator(kubeconfig: Path, namespace: str) -> Iterator[Operator]:
    with running_operator(kubeconfig, [namespace]) as running:
        yield running


def status_of(api: Any, namespace: str, name: str) -> dict[str, Any]:
    obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return dict(obj.get("status") or {})


def observed(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return None
    return dict(status)


def test_application_normal_invalid_and_fixed(
    api_client: Any, namespace: str, operator: Operator
) -> None:
    api = client.CustomObjectsApi(api_client)
    obj = app("iris")
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, copy.deepcopy(obj))

    status = wait_for(lambda: observed(api, namespace, "iris"), timeout=60, what="first status")
    assert [(v["version"], v["phase"], v["inputType"]) for v in status["versions"]] == [
        ("1.0.0", "Normal", "json"),
        ("2.0.0", "Normal", "json"),
    ]
    assert status["summary"] == "2/2"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["observedGeneration"] == 1

    # Break version 2.0.0: no APIs. The CRD accepts it; the operator reports it Invalid.
    broken = copy.deepcopy(obj["spec"])
    broken["versions"][1]["apis"] = []
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "iris", {"spec": broken})
    status = wait_for(lambda: observed(api, namespace, "iris"), timeout=60, what="Invalid")
    phases = {v["version"]: v for v in status["versions"]}
    assert phases["1.0.0"]["phase"] == "Normal"
    assert phases["2.0.0"]["phase"] == "Invalid"
    assert "spec.versions[1].apis: at least one API" in phases["2.0.0"]["message"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == (
        "False",
        "InvalidVersions",
        2,
    )
    assert status["summary"] == "1/2"

    # Fix it again.
    api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "iris", {"spec": obj["spec"]}
    )
    status = wait_for(lambda: observed(api, namespace, "iris"), timeout=60, what="fixed")
    assert all(v["phase"] == "Normal" for v in status["versions"])
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "True"

    events = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    reasons = {e.reason for e in events if e.involved_object.name == "iris"}
    assert {"VersionNormal", "VersionInvalid"} <= reasons

    # No bookkeeping on the object: passes are level-based, so nothing of Kopf's (progress,
    # last-handled spec, finalizer) is written into its metadata, spec or status.
    stored = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "iris")
    assert not stored["metadata"].get("annotations")
    assert not stored["metadata"].get("finalizers")
    assert set(stored["status"]) <= {"observedGeneration", "versions", "summary", "conditions"}


def test_operator_serves_metrics(api_client: Any, namespace: str, operator: Operator) -> None:
    api = client.CustomObjectsApi(api_client)
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, app("iris"))
    wait_for(lambda: observed(api, namespace, "iris"), timeout=60, what="status")
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:
        text = response.read().decode()
    assert "inferops_reconcile_seconds" in text
    assert "inferops_phase_transitions_total" in text
