"""Helpers of the end-to-end suite: pods that run a command, an S3 server pods can reach."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.s3server import CREDENTIALS, free_port, reset, wait_until_serving

CLUSTER_DIR = os.path.join(os.path.dirname(__file__), "..", "cluster")
if CLUSTER_DIR not in sys.path:
    sys.path.insert(0, CLUSTER_DIR)

from realnode import NAMESPACE_ANNOTATIONS, NODE_IP  # noqa: E402

PROJECT_IMAGE = "ghcr.io/inferops/inferops:0.1.0"
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "inferops"
OPERATOR_NAMESPACE = "inferops-e2e-system"
APPS_NAMESPACE = "inferops-e2e"
RELEASE = "inferops"

# Flavors that fit the 2-core node; the examples keep their flavor names (as in the kind
# workflow's charts/inferops/ci/kind-values.yaml).
E2E_FLAVORS = [
    {"name": "cpu.2u4g", "cpu": "100m", "memory": "192Mi", "pools": ["public", "pool-a", "pool-b"]},
    {"name": "cpu.4u8g", "cpu": "200m", "memory": "256Mi", "pools": ["public", "pool-a", "pool-b"]},
    {"name": "free.1u2g", "cpu": "50m", "memory": "128Mi", "free": True, "pools": ["public"]},
    # The node has no GPU: a pod of this flavor waits for one (tests/e2e/test_failures.py).
    {"name": "gpu.1x", "cpu": "50m", "memory": "128Mi", "gpu": 1, "pools": ["public"]},
]


@dataclass(frozen=True)
class Operator:
    release: str
    namespace: str  # the operator's
    apps: str  # the namespace it watches
    pod: Any  # its pod once Ready


@contextmanager
def install_operator(
    kubeconfig: Path,
    api: Any,
    flavors: list[dict[str, Any]] | None = None,
    webhook_client_ca: Path | None = None,
) -> Iterator[Operator]:
    """`helm install` of charts/inferops (the Helm SDK, no helm binary), waiting until the
    operator's pod is Ready; `helm uninstall` after. `flavors`: the catalog's flavors
    instead of E2E_FLAVORS (bench/router_cluster_bench.py gives its model more CPU).
    `webhook_client_ca`: the CA of the API server's webhook client certificate
    (ControlPlane.webhook_client_ca), which the webhook then requires of its callers."""
    import helm_python as helm
    from k8s_helpers import wait_for

    config = helm.Config(kubeconfig_path=str(kubeconfig), namespace=OPERATOR_NAMESPACE)
    values = {
        "image": {
            "repository": PROJECT_IMAGE.rsplit(":", 1)[0],
            "tag": PROJECT_IMAGE.rsplit(":", 1)[1],
            "pullPolicy": "Never",
        },
        "watchNamespaces": [APPS_NAMESPACE],
        "crds": {"install": False},
        "catalog": {"flavors": E2E_FLAVORS if flavors is None else flavors},
    }
    if webhook_client_ca is not None:
        from controlplane import WEBHOOK_CLIENT_NAME

        values["webhook"] = {
            "clientAuth": {
                "caBundle": webhook_client_ca.read_text(),
                "allowedNames": [WEBHOOK_CLIENT_NAME],
            }
        }
    config.install(str(CHART), RELEASE, values, namespace=OPERATOR_NAMESPACE, timeout=120)
    core = client.CoreV1Api(api)
    selector = "app.kubernetes.io/component=operator"

    def ready() -> Any:
        for pod in core.list_namespaced_pod(OPERATOR_NAMESPACE, label_selector=selector).items:
            if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
                return pod
        return None

    try:
        try:
            pod = wait_for(ready, timeout=180, what="the chart's operator pod Ready")
        except AssertionError:
            pods = core.list_namespaced_pod(OPERATOR_NAMESPACE, label_selector=selector).items
            logs = [pod_log(api, OPERATOR_NAMESPACE, p.metadata.name) for p in pods]
            raise AssertionError(
                f"operator not Ready: {[p.status for p in pods]}\n{logs}"
            ) from None
        # kube-proxy programs the webhook's Service a moment after the pod is Ready; until
        # then the API server's calls to it are refused
        webhook = core.read_namespaced_service(f"{RELEASE}-webhook", OPERATOR_NAMESPACE)
        wait_for(
            lambda: tcp_open(webhook.spec.cluster_ip, 443),
            timeout=60,
            what="the webhook Service reachable",
        )
        yield Operator(RELEASE, OPERATOR_NAMESPACE, APPS_NAMESPACE, pod)
    finally:
        config.uninstall(RELEASE, ignore_not_found=True, timeout=60)
        config.close()


def pods_report(api: Any, namespace: str, selector: str = "") -> str:
    """Each pod's phase, container states and the end of every container's log: what a
    failed end-to-end test needs to say."""
    out = []
    for pod in client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items:
        name = pod.metadata.name
        out.append(f"--- pod {name} on {pod.spec.node_name}: {pod.status.phase}")
        statuses = (pod.status.init_container_statuses or []) + (
            pod.status.container_statuses or []
        )
        for c in statuses:
            state = c.state.terminated or c.state.waiting or c.state.running
            out.append(f"  {c.name}: restarts {c.restart_count}, {state}")
            log = pod_log(api, namespace, name, c.name)
            out += [f"    | {line}" for line in log.splitlines()[-15:]]
    return "\n".join(out)


def tcp_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def pod_log(api: Any, namespace: str, name: str, container: str | None = None) -> str:
    # raw bytes: the client would otherwise parse a log that looks like JSON into a dict
    try:
        response = client.CoreV1Api(api).read_namespaced_pod_log(
            name, namespace, container=container, tail_lines=200, _preload_content=False
        )
        return str(response.data.decode(errors="replace"))
    except ApiException as exc:
        return f"(no log: {exc.status} {exc.reason})"


@dataclass(frozen=True)
class NodeS3:
    endpoint: str  # what pods and the tests use: the node's address

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def reset(self) -> None:
        reset(self.endpoint)


@contextmanager
def node_s3_server() -> Iterator[NodeS3]:
    """moto's S3 server listening on the node's bridge address only."""
    port = free_port()
    endpoint = f"http://{NODE_IP}:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", NODE_IP, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # pods address it by a Service name (minio.storage.svc): with path-style requests the
        # bucket is in the path, never in the Host's first label
        env={**os.environ, **CREDENTIALS, "S3_IGNORE_SUBDOMAIN_BUCKETNAME": "true"},
    )
    try:
        wait_until_serving(f"{endpoint}/moto-api/", process, 30, "the moto server")
        yield NodeS3(endpoint)
    finally:
        process.terminate()
        process.wait(timeout=10)


def make_node_namespace(api: Any, name: str, labels: dict[str, str] | None = None) -> str:
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(
                name=name,
                labels={"inferops-test": "1", "inferops-e2e": "1", **(labels or {})},
                annotations=dict(NAMESPACE_ANNOTATIONS),
            )
        )
    )
    return name


def delete_namespace(api: Any, name: str) -> None:
    try:
        client.CoreV1Api(api).delete_namespace(name, grace_period_seconds=0)
    except ApiException as exc:
        if exc.status != 404:
            raise


def pod_phase(api: Any, namespace: str, name: str) -> str:
    try:
        pod = client.CoreV1Api(api).read_namespaced_pod(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return ""
        raise
    return str(pod.status.phase or "")


def run_pod(
    api: Any,
    namespace: str,
    name: str,
    command: list[str],
    image: str = PROJECT_IMAGE,
    timeout: float = 120,
) -> tuple[str, str]:
    """Runs a one-shot pod to its end; returns its phase and its log."""
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "main",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": command,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 10001,
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        },
    )
    deadline = time.monotonic() + timeout
    phase = ""
    while time.monotonic() < deadline:
        phase = pod_phase(api, namespace, name)
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(0.5)
    else:
        pod = core.read_namespaced_pod(name, namespace)
        raise AssertionError(f"pod {namespace}/{name} still {phase}: {pod.status}")
    return phase, pod_log(api, namespace, name, "main")


def python_pod(api: Any, namespace: str, name: str, code: str, timeout: float = 120) -> Any:
    """Runs Python code in a pod of the project image; returns the JSON it printed last."""
    phase, log = run_pod(api, namespace, name, ["python3", "-c", code], timeout=timeout)
    assert phase == "Succeeded", f"{name}: {phase}\n{log}"
    return json.loads(log.strip().splitlines()[-1])


def http_json(url: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def custom_object(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "serving.inferops.dev", "v1alpha1", namespace, plural, name
    )
    return obj


def current_status(obj: dict[str, Any]) -> dict[str, Any]:
    """The status when it is about the current spec (observedGeneration), else {}."""
    status = obj.get("status") or {}
    return status if status.get("observedGeneration") == obj["metadata"]["generation"] else {}


def wait_phase(
    api: Any, namespace: str, plural: str, name: str, phases: tuple[str, ...], timeout: float = 240
) -> dict[str, Any]:
    """The status once its phase (for the current generation) is one of `phases`; on time
    out, the failure says what every pod of the namespace is doing."""
    from k8s_helpers import wait_for

    def reached() -> dict[str, Any] | None:
        status = current_status(custom_object(api, namespace, plural, name))
        return status if status.get("phase") in phases else None

    try:
        result: dict[str, Any] = wait_for(reached, timeout=timeout, what=f"{name} {phases}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pods_report(api, namespace)}") from None
    return result


def apply_objects(kubectl: Any, namespace: str, objects: list[dict[str, Any]]) -> None:
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
    )


def apply_examples(kubectl: Any, namespace: str, *names: str) -> None:
    """`kubectl apply` of files of examples/, unchanged, as a user would."""
    files = [arg for name in names for arg in ("-f", str(REPO / "examples" / name))]
    kubectl("apply", "-n", namespace, *files)


def fresh_buckets(store: NodeS3, *buckets: str) -> Any:
    """An S3 client on an emptied store holding just these (empty) buckets."""
    store.reset()
    s3 = store.client()
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)
    return s3


def json_lines(s3: Any, bucket: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every line of every object in the bucket, as (key, line, its JSON): what the agents
    wrote."""
    out = []
    for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        text = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
        out += [(item["Key"], line, json.loads(line)) for line in text.splitlines()]
    return out
