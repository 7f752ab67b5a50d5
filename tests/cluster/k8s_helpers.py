"""Helpers for the cluster tests (importable from test modules: ``from k8s_helpers import ...``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import controlplane as cpmod
from kubernetes import client
from kubernetes.client.rest import ApiException


def kubectl_path() -> str:
    """The kubectl to use: $INFEROPS_KUBECTL, else the one build.sh made (building it if
    needed and no kubectl is on PATH)."""
    env = os.environ.get("INFEROPS_KUBECTL")
    if env:
        return env
    built = cpmod.default_bin_dir() / "kubectl"
    if os.access(built, os.X_OK):
        return str(built)
    on_path = shutil.which("kubectl")
    if on_path:
        return on_path
    cpmod.build(["kubectl"])
    return str(built)


class Kubectl:
    """``kubectl(*args)`` runs kubectl against the test cluster and returns stdout."""

    def __init__(self, binary: str, kubeconfig: Path):
        self.binary = binary
        self.kubeconfig = kubeconfig

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
        stderr: bool = False,
    ) -> str:
        cmd = [self.binary, f"--kubeconfig={self.kubeconfig}", *args]
        p = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
            )
        return p.stdout + p.stderr if stderr else p.stdout


def wait_for(
    predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.25, what: str = ""
) -> Any:
    """Poll until predicate() is truthy; return its value or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or predicate} (last: {last!r})"
    )


def read_crd(api_client: Any, name: str) -> Any:
    """The CustomResourceDefinition called `name`, or None when there is none."""
    try:
        return client.ApiextensionsV1Api(api_client).read_custom_resource_definition(name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def wait_for_default_service_account(api: Any, namespace: str, timeout: float = 30) -> None:
    """Pods can be created once the namespace's `default` ServiceAccount exists."""
    core = client.CoreV1Api(api)

    def exists() -> bool:
        try:
            core.read_namespaced_service_account("default", namespace)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    wait_for(exists, timeout=timeout, what=f"ServiceAccount {namespace}/default")


def wait_established(kubectl: Kubectl, path: Path, timeout: float = 60) -> None:
    """Every CRD of a file Established. `kubectl wait --for=condition=Established` fails at
    once, instead of waiting, while a CRD just applied has no conditions yet."""
    import yaml

    names = [
        d["metadata"]["name"]
        for d in yaml.safe_load_all(path.read_text())
        if d and d.get("kind") == "CustomResourceDefinition"
    ]

    def established() -> bool:
        for name in names:
            out = kubectl(
                "get",
                "crd",
                name,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Established')].status}",
                check=False,
            )
            if out.strip() != "True":
                return False
        return True

    wait_for(established, timeout=timeout, what=f"{', '.join(names)} Established")


def printed(kubectl: Kubectl, namespace: str, resource: str, name: str) -> dict[str, str]:
    """What `kubectl get -o wide` prints for one object, by column header (the columns
    are aligned under their headers; the last one may hold spaces)."""
    header, row = kubectl("get", resource, name, "-n", namespace, "-o", "wide").splitlines()[:2]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    bounds = [*starts[1:], None]
    return {n: row[s:e].strip() for n, s, e in zip(names, starts, bounds, strict=True)}
