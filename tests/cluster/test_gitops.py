"""What a GitOps tool sees after it applied the examples and the operator and the API
server did their part: no difference at all, so Argo CD needs no ignoreDifferences for the
three kinds (docs/gitops.md). Checked as Argo CD compares: `kubectl diff` client-side (a
three-way merge with the last applied configuration) and server-side (a dry-run apply)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_helpers import Kubectl, wait_for
from kubernetes import client

from inferops.api.names import GROUP, VERSION
from tests.cluster.operator_process import Operator, running_operator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = ("iris-application.yaml", "iris-realtime.yaml", "iris-shadow-realtime.yaml")


@pytest.fixture
def operator(kubeconfig: Path, namespace: str, kwok_nodes: list[str]) -> Iterator[Operator]:
    with running_operator(kubeconfig, [namespace]) as running:
        yield running


def settled(api: Any, namespace: str) -> bool:
    obj = api.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "realtimeservices", "iris-online"
    )
    status = obj.get("status") or {}
    return (
        status.get("observedGeneration") == obj["metadata"]["generation"]
        and status.get("phase") == "Running"
    )


@pytest.mark.parametrize("mode", ["client-side", "server-side"])
def test_applied_examples_show_no_difference_once_running(
    kubectl: Kubectl, api_client: Any, namespace: str, operator: Operator, mode: str
) -> None:
    args = [f"--server-side={'true' if mode == 'server-side' else 'false'}", "-n", namespace]
    files = [arg for name in FILES for arg in ("-f", str(EXAMPLES / name))]
    kubectl("apply", *args, *files)
    custom = client.CustomObjectsApi(api_client)
    wait_for(lambda: settled(custom, namespace), timeout=120, what="iris-online Running")
    # kubectl diff exits 1 with the difference when there is one (Kubectl raises with it).
    assert kubectl("diff", *args, *files) == ""
