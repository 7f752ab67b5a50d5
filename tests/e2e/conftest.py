"""The end-to-end suite: every container runs, on the real node of the test cluster.

The session's control plane (tests/cluster/fixtures.py) starts a real node when this
directory is collected: containerd, runc, the CNI bridge, kubelet, kube-proxy and CoreDNS,
with the images of images/build.py loaded. Where no node can run here (no root, missing
packages) the suite is skipped with one line saying why; CI sets INFEROPS_REQUIRE_REAL_NODE
so that a skip there is a failure instead.

Pods of a namespace made by ``node_namespace`` run on the real node and only there; the
kwok nodes keep every other test's pods.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.cluster.fixtures import REQUIRE_NODE_ENV
from tests.e2e.support import (
    APPS_NAMESPACE,
    OPERATOR_NAMESPACE,
    NodeS3,
    Operator,
    delete_namespace,
    install_operator,
    make_node_namespace,
    node_s3_server,
)
from tests.s3server import CREDENTIALS

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: runs real containers on the test cluster's node")
    config.addinivalue_line("markers", "host_restore: stops the node; runs after every test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
    # the host check stops the node, so it goes after everything else
    last = [i for i in items if i.get_closest_marker("host_restore")]
    items[:] = [i for i in items if not i.get_closest_marker("host_restore")] + last


@pytest.fixture(scope="session")
def real_node(control_plane: Any) -> Any:
    """The ControlPlane with its real node (skips, or fails under CI, where none runs)."""
    if control_plane is None:
        reason = "INFEROPS_E2E_KUBECONFIG names an external cluster; the suite needs its own node"
    elif control_plane.node is None:
        reason = f"no real node: {control_plane.node_unavailable or 'it was stopped'}"
    else:
        return control_plane
    if os.environ.get(REQUIRE_NODE_ENV):
        pytest.fail(f"{REQUIRE_NODE_ENV} is set: {reason}")
    pytest.skip(reason)


@pytest.fixture
def node_namespace(cluster_api_client: Any, real_node: Any) -> Iterator[str]:
    """A fresh namespace whose pods run on the real node; deleted after the test."""
    from k8s_helpers import wait_for_default_service_account

    name = make_node_namespace(cluster_api_client, f"e2e-{uuid.uuid4().hex[:8]}")
    wait_for_default_service_account(cluster_api_client, name)
    try:
        yield name
    finally:
        delete_namespace(cluster_api_client, name)


@pytest.fixture(scope="session")
def teardowns(real_node: Any) -> Iterator[contextlib.ExitStack]:
    """The session's resources in the cluster (the chart, namespaces, the S3 server), undone
    in reverse at the end of the session, or earlier by the host check, which must stop the
    node (and with it the API server's address) only after them. Closing twice is a no-op."""
    with contextlib.ExitStack() as stack:
        yield stack


@pytest.fixture(scope="session")
def node_s3(teardowns: contextlib.ExitStack) -> NodeS3:
    """An S3-API server (moto) on the node's address, where pods and the tests reach it."""
    return teardowns.enter_context(node_s3_server())


@pytest.fixture(scope="session")
def operator(
    teardowns: contextlib.ExitStack, kubeconfig: Path, cluster_api_client: Any, real_node: Any
) -> Operator:
    """The operator installed by the Helm chart with the image the Dockerfile makes, in its
    own namespace, watching APPS_NAMESPACE; both namespaces run on the real node. The
    session's CRDs (crds/, the same as the chart's) stay; the chart installs the rest. Its
    webhook requires the API server's client certificate (webhook.clientAuth)."""
    for name in (OPERATOR_NAMESPACE, APPS_NAMESPACE):
        make_node_namespace(cluster_api_client, name)
        teardowns.callback(delete_namespace, cluster_api_client, name)
    installed = install_operator(
        kubeconfig, cluster_api_client, webhook_client_ca=real_node.webhook_client_ca
    )
    return teardowns.enter_context(installed)


@pytest.fixture(scope="session")
def object_store(
    teardowns: contextlib.ExitStack, node_s3: NodeS3, cluster_api_client: Any
) -> NodeS3:
    """`minio.storage.svc:9000` in the cluster (the examples' object store): a Service
    without selector whose EndpointSlice points at the S3 server on the node's address."""
    import realnode

    core = client.CoreV1Api(cluster_api_client)
    port = int(node_s3.endpoint.rsplit(":", 1)[1])
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name="storage", labels={"inferops-test": "1"})
        )
    )
    teardowns.callback(delete_namespace, cluster_api_client, "storage")
    core.create_namespaced_service(
        "storage",
        {
            "metadata": {"name": "minio"},
            "spec": {"ports": [{"name": "s3", "port": 9000, "targetPort": port}]},
        },
    )
    client.DiscoveryV1Api(cluster_api_client).create_namespaced_endpoint_slice(
        "storage",
        {
            "metadata": {"name": "minio-node", "labels": {"kubernetes.io/service-name": "minio"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [realnode.NODE_IP]}],
            "ports": [{"name": "s3", "port": port, "protocol": "TCP"}],
        },
    )
    return node_s3


@pytest.fixture(scope="session")
def storage_secret(operator: Operator, cluster_api_client: Any) -> str:
    """The Secret `object-storage` the examples' storage.secretRef names (the S3 keys),
    labelled usable by services (validation/secrets.py)."""
    client.CoreV1Api(cluster_api_client).create_namespaced_secret(
        operator.apps,
        {
            "metadata": {
                "name": "object-storage",
                "labels": {"serving.inferops.dev/usable": "true"},
            },
            "stringData": {
                k: CREDENTIALS[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            },
        },
    )
    return "object-storage"
