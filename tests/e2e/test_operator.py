"""The chart's operator runs in-cluster: its pod is Ready under the chart's ServiceAccount,
and the API server calls its webhook through the webhook's Service, with the client
certificate the webhook requires (webhook.clientAuth)."""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess
from typing import Any

import realnode
from k8s_helpers import Kubectl
from kubernetes import client

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


def answer(context: ssl.SSLContext, address: str, host: str) -> bytes:
    """The first bytes the webhook answers a (bodiless) review with; b"" when it drops the
    connection instead."""
    try:
        with (
            socket.create_connection((address, 443), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            request = (
                f"POST /realtimeservices HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
            )
            tls.sendall(request.encode())
            return tls.recv(64)
    except ssl.SSLCertVerificationError:
        raise  # the webhook's own certificate must check out
    except (ssl.SSLError, ConnectionResetError):
        return b""


def test_a_caller_without_the_api_servers_certificate_is_refused_in_the_handshake(
    operator: Operator, cluster_api_client: Any, real_node: Any
) -> None:
    """What a pod would try: the webhook's Service, its CA trusted, no client certificate.
    The server's certificate checks out, then the webhook ends the handshake and no review
    is read; with the API server's certificate the same request gets an HTTP answer (and
    the API server's own calls pass: the test above)."""
    core = client.CoreV1Api(cluster_api_client)
    service = core.read_namespaced_service(f"{RELEASE}-webhook", operator.namespace)
    secret = core.read_namespaced_secret(f"{RELEASE}-webhook-tls", operator.namespace)
    ca = base64.b64decode(secret.data["ca.crt"]).decode()
    host = f"{RELEASE}-webhook.{operator.namespace}.svc"
    anonymous = ssl.create_default_context(cadata=ca)
    assert answer(anonymous, service.spec.cluster_ip, host) == b""
    apiserver = ssl.create_default_context(cadata=ca)
    apiserver.load_cert_chain(*real_node.webhook_client_cert)
    assert answer(apiserver, service.spec.cluster_ip, host).startswith(b"HTTP/1.1 400")
