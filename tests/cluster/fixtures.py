"""Fixtures for tests that need a real Kubernetes API (marker ``cluster``).

By default a local control plane (etcd, kube-apiserver, kube-controller-manager, and
kube-scheduler + kwok when built) is built/reused by ``tests/cluster/build.sh`` and
started on loopback in a temp dir for the whole session. Set ``INFEROPS_E2E_KUBECONFIG``
to the kubeconfig of an existing cluster (kind, ...) to run the same tests against it.

Every ``crds/*.yaml`` at the repo root is applied (server-side) and waited for
(Established) before the first test. When a test failed, the control plane's logs are
kept and their path is printed at the end of the session.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CRDS_DIR = REPO / "crds"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import controlplane as cpmod  # noqa: E402
import realnode  # noqa: E402
from k8s_helpers import (  # noqa: E402
    Kubectl,
    kubectl_path,
    wait_established,
    wait_for_default_service_account,
)

E2E_KUBECONFIG_ENV = "INFEROPS_E2E_KUBECONFIG"
#: Set (as CI does) to fail instead of skipping the end-to-end suite where no node can run.
REQUIRE_NODE_ENV = "INFEROPS_REQUIRE_REAL_NODE"
E2E_DIR = REPO / "tests" / "e2e"


def _wants_real_node(session: pytest.Session) -> bool:
    """A real node costs a few seconds and changes the host: only for the e2e suite."""
    return any(E2E_DIR in Path(str(item.fspath)).resolve().parents for item in session.items)


def _external_kubeconfig() -> Path | None:
    value = os.environ.get(E2E_KUBECONFIG_ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        warnings.warn(
            f"{E2E_KUBECONFIG_ENV}={value} is not a file: starting a local control plane",
            stacklevel=2,
        )
        return None
    return path


def _say(config: pytest.Config, msg: str) -> None:
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(msg)
    else:
        print(msg, file=sys.stderr)


def _install_crds(kubectl: Kubectl) -> list[Path]:
    if not CRDS_DIR.is_dir():
        return []
    files = sorted([*CRDS_DIR.glob("*.yaml"), *CRDS_DIR.glob("*.yml")])
    for f in files:
        kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=inferops-tests",
            "-f",
            str(f),
        )
    for f in files:
        wait_established(kubectl, f)
    return files


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[cpmod.ControlPlane | None]:
    """The local ControlPlane, or None when the tests run against $INFEROPS_E2E_KUBECONFIG."""
    if _external_kubeconfig() is not None:
        yield None
        return
    t0 = time.monotonic()
    bin_dir = cpmod.build(quiet=True)
    t_build = time.monotonic() - t0
    real = _wants_real_node(request.session)
    reason = realnode.unavailable_reason(bin_dir) if real else None
    if reason:
        if os.environ.get(REQUIRE_NODE_ENV):
            raise RuntimeError(f"{REQUIRE_NODE_ENV} is set but no real node can run: {reason}")
        real = False
    workdir = Path(tempfile.mkdtemp(prefix="inferops-cp-"))
    cp = cpmod.ControlPlane(
        workdir, bin_dir, real_node=real, node_images=realnode.node_images() if real else None
    )
    cp.node_unavailable = reason
    cp.start()
    node = f", real node in {cp.timings['node']:.1f}s" if cp.node else ""
    _say(
        request.config,
        f"\n[cluster] control plane at {cp.server} (binaries {t_build:.1f}s, "
        f"ready in {cp.timings['ready']:.1f}s{node}, "
        f"kwok={'on' if cp.kwok_enabled else 'off'}); logs: {cp.logs_dir}",
    )
    failed = True
    try:
        yield cp
        failed = bool(request.session.testsfailed)
    finally:
        cp.stop()
        if cp.node_problems:
            failed = True
            _say(request.config, "[cluster] the host is not as before the real node started:")
            for line in cp.node_problems:
                _say(request.config, f"[cluster]   {line}")
        if failed or os.environ.get("INFEROPS_KEEP_CLUSTER_LOGS"):
            cp.cleanup(keep_logs=True)
            _say(request.config, f"[cluster] control plane logs kept in {cp.logs_dir}")
        else:
            cp.cleanup(keep_logs=False)


@pytest.fixture(scope="session")
def cluster_kubeconfig(control_plane: cpmod.ControlPlane | None) -> Path:
    """Admin kubeconfig of the test cluster, without installing the project's CRDs."""
    path = _external_kubeconfig() if control_plane is None else control_plane.kubeconfig
    assert path is not None
    return path


@pytest.fixture(scope="session")
def crds(cluster_kubeconfig: Path) -> list[Path]:
    """Applies every crds/*.yaml (server-side) and waits until each is Established."""
    return _install_crds(Kubectl(kubectl_path(), cluster_kubeconfig))


@pytest.fixture(scope="session")
def kubeconfig(cluster_kubeconfig: Path, crds: list[Path]) -> Path:
    """Path of an admin kubeconfig for the test cluster, with the project's CRDs installed."""
    return cluster_kubeconfig


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path) -> Kubectl:
    """``kubectl(*args)`` against the test cluster (CRDs installed); returns stdout."""
    return Kubectl(kubectl_path(), kubeconfig)


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` (admin) for the test cluster, CRDs installed."""
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def cluster_kubectl(cluster_kubeconfig: Path) -> Kubectl:
    """Like ``kubectl`` but without requiring the project's CRDs."""
    return Kubectl(kubectl_path(), cluster_kubeconfig)


@pytest.fixture(scope="session")
def cluster_api_client(cluster_kubeconfig: Path) -> Iterator[Any]:
    """Like ``api_client`` but without requiring the project's CRDs."""
    api = config.new_client_from_config(config_file=str(cluster_kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def kwok_nodes(cluster_api_client: Any) -> list[str]:
    """Names of the Ready nodes that kwok simulates (skips the test when there are none)."""
    nodes = client.CoreV1Api(cluster_api_client).list_node().items
    names = [
        n.metadata.name
        for n in nodes
        if (n.metadata.annotations or {}).get(cpmod.KWOK_ANNOTATION) == "fake"
        and any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
    ]
    if not names:
        pytest.skip("no kwok nodes in this cluster (build kwok: tests/cluster/build.sh)")
    return names


@pytest.fixture
def namespace(cluster_api_client: Any) -> Iterator[str]:
    """A fresh namespace (with its default ServiceAccount), deleted after the test."""
    core = client.CoreV1Api(cluster_api_client)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"inferops-test": "1"}))
    )

    wait_for_default_service_account(cluster_api_client, name)
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise
