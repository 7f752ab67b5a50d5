"""The chart's operator runs in-cluster: its pod is Ready under the chart's ServiceAccount,
and the API server calls its webhook through the webhook's Service."""

from __future__ import annotations

import subprocess

import realnode
from k8s_helpers import Kubectl

from tests.e2e.support import RELEASE, Operator

INVALID = """
apiVersion: serving.inferops.dev/v1alpha1
kind: RealTimeService
metadata: {name: too-many-free}
spec:
  resourcePool: public
  versions:
  - {application: iris, version: 1.0.0, trafficRatio: 50, specification: free.1u2g}
  - {application: iris, version: 2.0.0, trafficRatio: 50, specification: free.1u2g}
"""


def test_operator_pod_runs_under_the_charts_service_account(operator: Operator) -> None:
    pod = operator.pod
    assert pod.spec.node_name == realnode.NODE_NAME
    assert pod.spec.service_account_name == RELEASE
    container = pod.status.container_statuses[0]
    assert container.ready and container.restart_count == 0
    assert container.image == "ghcr.io/inferops/inferops:0.1.0"
    security = pod.spec.containers[0].security_context
    assert security.run_as_non_root and security.read_only_root_filesystem
    assert security.allow_privilege_escalation is False


def test_webhook_refuses_an_invalid_service_naming_the_field(
    operator: Operator, kubectl: Kubectl
) -> None:
    p = subprocess.run(
        [
            kubectl.binary,
            f"--kubeconfig={kubectl.kubeconfig}",
            "apply",
            "-n",
            operator.apps,
            "-f",
            "-",
        ],
        input=INVALID,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode != 0, p.stdout
    assert 'admission webhook "realtimeservices.serving.inferops.dev" denied' in p.stderr, p.stderr
    assert "spec.versions[0].specification" in p.stderr
    assert "free flavor 'free.1u2g' allows a single version" in p.stderr
