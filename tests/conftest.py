"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.fixtures import (  # the cluster fixtures, shared by tests/cluster and tests/e2e
    api_client,
    cluster_api_client,
    cluster_kubeconfig,
    cluster_kubectl,
    control_plane,
    crds,
    kubeconfig,
    kubectl,
    kwok_nodes,
    namespace,
)
from tests.s3server import CREDENTIALS, client, reset, s3_server

__all__ = [
    "api_client",
    "cluster_api_client",
    "cluster_kubeconfig",
    "cluster_kubectl",
    "control_plane",
    "crds",
    "kubeconfig",
    "kubectl",
    "kwok_nodes",
    "namespace",
]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-API server on loopback for the whole run."""
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client on an empty server; the process env points inferops at it too."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("INFEROPS_S3_ENDPOINT", s3_endpoint)
    reset(s3_endpoint)
    return client(s3_endpoint)
