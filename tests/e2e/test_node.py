"""The real node itself: containers run, Services and DNS work, nothing beyond is reachable,
and stopping it leaves the host as it was."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import realnode
from k8s_helpers import Kubectl, wait_for
from kubernetes import client

from tests.e2e.support import PROJECT_IMAGE, apply_objects, http_json, python_pod

IRIS_REQUEST = {
    "data": {
        "req_data": [
            {"input_1": 5.1, "input_2": 3.5, "input_3": 1.4, "input_4": 0.2},
            {"input_1": 6.7, "input_2": 3.0, "input_3": 5.2, "input_4": 2.3},
        ]
    }
}


def model_server(namespace: str, name: str) -> list[dict[str, Any]]:
    labels = {"app": name}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "model",
                                "image": PROJECT_IMAGE,
                                "imagePullPolicy": "Never",
                                "args": ["model-server", "--model", "/opt/inferops/models/iris"],
                                "ports": [{"containerPort": 8080}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/health", "port": 8080},
                                    "periodSeconds": 1,
                                },
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"memory": "256Mi"},
                                },
                                "securityContext": {
                                    "runAsNonRoot": True,
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                    "seccompProfile": {"type": "RuntimeDefault"},
                                },
                                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                            }
                        ],
                        "volumes": [{"name": "tmp", "emptyDir": {}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    ]


def ready_pod(api: Any, namespace: str, selector: str) -> Any:
    def ready() -> Any:
        pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector)
        for pod in pods.items:
            if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
                return pod
        return None

    return wait_for(ready, timeout=120, what=f"a Ready pod {selector} in {namespace}")


def test_model_server_runs_in_a_real_container(
    cluster_api_client: Any, cluster_kubectl: Kubectl, node_namespace: str
) -> None:
    apply_objects(cluster_kubectl, node_namespace, model_server(node_namespace, "iris"))
    pod = ready_pod(cluster_api_client, node_namespace, "app=iris")
    assert pod.spec.node_name == realnode.NODE_NAME
    status = pod.status.container_statuses[0]
    assert status.container_id.startswith("containerd://") and status.restart_count == 0
    assert pod.status.pod_ip.startswith("10.245.0.")

    service = client.CoreV1Api(cluster_api_client).read_namespaced_service("iris", node_namespace)
    # kube-proxy programs the Service a moment after the pod is Ready
    code, body = wait_for(
        lambda: _answer(f"http://{service.spec.cluster_ip}/"),
        timeout=30,
        what="the Service answering",
    )
    assert code == 200, body
    assert [r["predictresult"] for r in body["resp_data"]] == ["setosa", "virginica"]

    # the API server reaches the kubelet: logs and exec
    logs = cluster_kubectl("logs", "-n", node_namespace, pod.metadata.name)
    assert "POST /" in logs or "health" in logs or logs == "", logs
    out = cluster_kubectl(
        "exec",
        "-n",
        node_namespace,
        pod.metadata.name,
        "--",
        "python3",
        "-c",
        "import os; print(os.getuid())",
    )
    assert out.strip() == "10001"


def _answer(url: str) -> tuple[int, Any] | None:
    try:
        return http_json(url, IRIS_REQUEST)
    except OSError:
        return None


DNS_PROBE = """
import json, socket
out = {}
for name in ("iris.{ns}.svc.cluster.local", "kubernetes.default.svc.cluster.local",
             "example.com", "pypi.org"):
    try:
        out[name] = socket.gethostbyname(name)
    except OSError as exc:
        out[name] = "error"
s = socket.create_connection((out["kubernetes.default.svc.cluster.local"], 443), timeout=5)
s.close()
out["api"] = "connected"
print(json.dumps(out))
"""


def test_cluster_dns_answers_cluster_names_only(
    cluster_api_client: Any, cluster_kubectl: Kubectl, node_namespace: str
) -> None:
    apply_objects(cluster_kubectl, node_namespace, model_server(node_namespace, "iris")[1:])
    service = client.CoreV1Api(cluster_api_client).read_namespaced_service("iris", node_namespace)
    out = python_pod(
        cluster_api_client, node_namespace, "dns", DNS_PROBE.replace("{ns}", node_namespace)
    )
    assert out[f"iris.{node_namespace}.svc.cluster.local"] == service.spec.cluster_ip
    assert out["kubernetes.default.svc.cluster.local"] == "10.0.0.1"
    assert out["api"] == "connected"  # the API server through the kubernetes Service
    # nothing is forwarded to any resolver beyond the cluster
    assert out["example.com"] == "error" and out["pypi.org"] == "error"


OUTSIDE_NS = "inferops-outside"
OUTSIDE_HOST, OUTSIDE_PEER = "10.246.255.1", "10.246.255.2"


@pytest.fixture
def outside_host() -> Iterator[str]:
    """A stand-in for the rest of the world: a network namespace beside the node, reachable
    from the host through a veth pair. Pods must not reach it."""
    run = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True)  # noqa: E731
    run("ip", "netns", "add", OUTSIDE_NS)
    server = None
    try:
        run(
            "ip",
            "link",
            "add",
            "inftest-out",
            "type",
            "veth",
            "peer",
            "name",
            "inftest-in",
            "netns",
            OUTSIDE_NS,
        )
        run("ip", "addr", "add", f"{OUTSIDE_HOST}/30", "dev", "inftest-out")
        run("ip", "link", "set", "inftest-out", "up")
        run("ip", "-n", OUTSIDE_NS, "addr", "add", f"{OUTSIDE_PEER}/30", "dev", "inftest-in")
        run("ip", "-n", OUTSIDE_NS, "link", "set", "inftest-in", "up")
        run("ip", "-n", OUTSIDE_NS, "link", "set", "lo", "up")
        run("ip", "-n", OUTSIDE_NS, "route", "add", "default", "via", OUTSIDE_HOST)
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                OUTSIDE_NS,
                sys.executable,
                "-m",
                "http.server",
                "8000",
                "--bind",
                OUTSIDE_PEER,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(
            lambda: _http_ok(f"http://{OUTSIDE_PEER}:8000/"),
            timeout=20,
            what="the outside host's HTTP server",
        )
        yield OUTSIDE_PEER
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        subprocess.run(["ip", "link", "del", "inftest-out"], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", OUTSIDE_NS], check=False, capture_output=True)


def _http_ok(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)
    return False


REACH_PROBE = """
import json, socket
out = {}
for name, addr in (("node", ("{node}", {node_port})), ("outside", ("{outside}", 8000))):
    try:
        socket.create_connection(addr, timeout=3).close()
        out[name] = "connected"
    except OSError as exc:
        out[name] = type(exc).__name__
print(json.dumps(out))
"""


def test_pods_reach_the_node_but_nothing_beyond(
    cluster_api_client: Any, node_namespace: str, outside_host: str
) -> None:
    # the host reaches the outside namespace: the address is live, only pods are held back
    assert _http_ok(f"http://{outside_host}:8000/")
    with _listening(realnode.NODE_IP) as node_port:
        code = (
            REACH_PROBE.replace("{node}", realnode.NODE_IP)
            .replace("{node_port}", str(node_port))
            .replace("{outside}", outside_host)
        )
        out = python_pod(cluster_api_client, node_namespace, "reach", code)
    assert out == {"node": "connected", "outside": "TimeoutError"}, out


@contextlib.contextmanager
def _listening(host: str) -> Iterator[int]:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


@pytest.mark.host_restore
def test_stopping_the_node_restores_the_host(
    real_node: Any, teardowns: contextlib.ExitStack
) -> None:
    """Runs last (conftest): the session's resources are removed, the node is drained and
    stopped, and every sysctl, netfilter table, link, route, mount, cgroup and folder is as
    before it started."""
    teardowns.close()
    problems = real_node.stop_node()
    assert problems == [], "\n".join(problems)
