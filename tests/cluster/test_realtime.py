"""RealTimeService reconciliation with the real operator on the real API server.

kwok runs the pods on fake nodes, so Deployments become ready without containers; nothing
here connects to pod IPs.
"""

from __future__ import annotations

import copy
import datetime
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_helpers import Kubectl, printed, wait_for
from kubernetes import client

from inferops.api.names import GROUP, VERSION
from tests.cluster.operator_process import Operator, metric_samples, running_operator
from tests.unit.rules_table import app, rts, version

OWNER = "serving.inferops.dev/owner-name"


@pytest.fixture
def operator(kubeconfig: Path, namespace: str, kwok_nodes: list[str]) -> Iterator[Operator]:
    with running_operator(kubeconfig, [namespace]) as running:
        yield running


class Cluster:
    def __init__(self, api_client: Any, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.ns = namespace

    def create(self, obj: dict[str, Any]) -> None:
        plural = {"AIApplication": "aiapplications", "RealTimeService": "realtimeservices"}
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, plural[obj["kind"]], copy.deepcopy(obj)
        )

    def rts(self, name: str = "svc") -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, "realtimeservices", name
        )
        return result

    def patch_spec(self, spec: dict[str, Any], name: str = "svc") -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, "realtimeservices", name, {"spec": spec}
        )

    def phase(self, want: str, name: str = "svc", timeout: float = 90) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            obj = self.rts(name)
            status = obj.get("status") or {}
            current = status.get("observedGeneration") == obj["metadata"]["generation"]
            return status if current and status.get("phase") == want else None

        return dict(wait_for(check, timeout=timeout, what=f"{name} {want}"))

    def deployments(self, name: str = "svc") -> dict[str, Any]:
        items = self.apps.list_namespaced_deployment(self.ns, label_selector=f"{OWNER}={name}")
        return {d.metadata.name: d for d in items.items}

    def children(self, name: str = "svc") -> list[str]:
        selector = f"{OWNER}={name}"
        names = [f"Deployment/{d}" for d in self.deployments(name)]
        names += [
            f"Service/{s.metadata.name}"
            for s in self.core.list_namespaced_service(self.ns, label_selector=selector).items
        ]
        names += [
            f"ConfigMap/{c.metadata.name}"
            for c in self.core.list_namespaced_config_map(self.ns, label_selector=selector).items
        ]
        return sorted(names)


@pytest.fixture
def cluster(api_client: Any, namespace: str) -> Cluster:
    return Cluster(api_client, namespace)


def test_create_ratio_change_prune_stop_and_start(cluster: Cluster, operator: Operator) -> None:
    cluster.create(app("iris"))
    cluster.create(rts(version("1.0.0", 70, computeNodes=2), version("2.0.0", 30)))
    status = cluster.phase("Running")
    assert status["traffic"] == "iris:1.0.0=70,iris:2.0.0=30"
    assert status["ready"] == "3/3"
    assert status["url"] == f"http://svc.{cluster.ns}.svc.cluster.local"
    assert [(v["version"], v["readyNodes"], v["desiredNodes"]) for v in status["versions"]] == [
        ("1.0.0", 2, 2),
        ("2.0.0", 1, 1),
    ]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["observedGeneration"] == 1
    children = cluster.children()
    assert len(children) == 7  # 2 model Deployments + router; 2 Services + stable; ConfigMap
    assert "Service/svc" in children and "Deployment/svc-router" in children

    # Only the ratios change: the model pod templates stay, only the router rolls.
    before = {
        n: (d.metadata.generation, d.spec.template.to_dict())
        for n, d in cluster.deployments().items()
    }
    cluster.patch_spec({"versions": [version("1.0.0", 20, computeNodes=2), version("2.0.0", 80)]})
    status = cluster.phase("Running")
    assert status["traffic"] == "iris:1.0.0=20,iris:2.0.0=80"
    after = {
        n: (d.metadata.generation, d.spec.template.to_dict())
        for n, d in cluster.deployments().items()
    }
    changed = sorted(n for n in before if before[n] != after[n])
    assert changed == ["svc-router"]
    config = cluster.core.read_namespaced_config_map("svc-router", cluster.ns).data["nginx.conf"]
    assert "20% svc-iris-1-0-0-" in config and "80% svc-iris-2-0-0-" in config

    # Removing a version prunes its Deployment and Service.
    cluster.patch_spec({"versions": [version("2.0.0", 100)]})
    cluster.phase("Running")
    wait_for(lambda: len(cluster.children()) == 5, timeout=30, what="pruned children")
    assert not any("1-0-0" in c for c in cluster.children())

    # Stop scales everything to zero and reports Stopped; start brings it back.
    cluster.patch_spec({"stopped": True})
    status = cluster.phase("Stopped")
    wait_for(
        lambda: all(d.spec.replicas == 0 for d in cluster.deployments().values()),
        timeout=30,
        what="scaled to zero",
    )
    wait_for(lambda: cluster.phase("Stopped")["ready"] == "0/0", timeout=60, what="0/0")
    cluster.patch_spec({"stopped": False})
    status = cluster.phase("Running")
    assert status["ready"] == "1/1"

    reasons = [
        e.reason
        for e in cluster.core.list_namespaced_event(cluster.ns).items
        if e.involved_object.name == "svc"
    ]
    assert {"Running", "Pruned", "Stopped"} <= set(reasons)

    # Child events drove the status (refreshes ran); bursts of them shared refreshes.
    refreshes = metric_samples(operator.metrics_url, "inferops_status_refreshes_total")
    counts = {
        dict(labels)["result"]: int(value)
        for labels, value in refreshes.items()
        if dict(labels)["kind"] == "RealTimeService"
    }
    assert counts.get("run", 0) >= 1
    print(f"[refreshes] child events {sum(counts.values())}: {counts}")


def test_invalid_spec_is_failed_with_a_message_naming_the_field(
    cluster: Cluster, operator: Operator, kubectl: Kubectl
) -> None:
    cluster.create(app("iris"))
    cluster.create(rts(version("3.0.0", 100)))
    status = cluster.phase("Failed")
    assert (
        "spec.versions[0].version: application 'iris' has no version '3.0.0'" in status["message"]
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec" and ready["status"] == "False"
    shown = printed(kubectl, cluster.ns, "rts", "svc")
    assert (shown["PHASE"], shown["REASON"]) == ("Failed", "InvalidSpec")
    assert "application 'iris' has no version '3.0.0'" in shown["MESSAGE"]
    assert cluster.children() == []


def test_a_child_the_api_server_refuses_is_named_in_status(
    cluster: Cluster, operator: Operator, kubectl: Kubectl
) -> None:
    """A ResourceQuota of the namespace refuses the service's Services: the status says so
    in the API server's words (not only the operator's log), and the service deploys as
    soon as the quota is lifted."""
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-services"},
        "spec": {"hard": {"services": "0"}},
    }
    kubectl("apply", "-n", cluster.ns, "-f", "-", input=json.dumps(quota))
    cluster.create(app("iris"))
    cluster.create(rts(version("1.0.0", 100)))

    def refused() -> dict[str, Any] | None:
        status = cluster.rts().get("status") or {}
        ready = next((c for c in status.get("conditions") or () if c["type"] == "Ready"), {})
        return status if ready.get("reason") == "ChildRefused" else None

    status = wait_for(refused, timeout=60, what="ChildRefused")
    assert status["phase"] == "Deploying"
    assert status["message"].startswith("the API server refused Service/")
    assert "exceeded quota: no-services" in status["message"]
    assert "retrying in" in status["message"]
    shown = printed(kubectl, cluster.ns, "rts", "svc")
    assert (shown["PHASE"], shown["REASON"]) == ("Deploying", "ChildRefused")
    assert "exceeded quota: no-services" in shown["MESSAGE"]
    kubectl("delete", "resourcequota", "no-services", "-n", cluster.ns)
    cluster.phase("Running", timeout=120)  # the back-off brings the next attempt


def test_service_follows_its_application(cluster: Cluster, operator: Operator) -> None:
    cluster.create(rts(version("1.0.0", 100)))
    assert "application 'iris' not found" in cluster.phase("Failed")["message"]
    cluster.create(app("iris"))  # the application appears: the service deploys
    cluster.phase("Running")


def test_timeout_without_readiness_is_failed(cluster: Cluster, operator: Operator) -> None:
    cluster.create(app("iris"))
    huge = rts(version("1.0.0", 100, timeoutMinutes=3))
    huge["spec"]["resourcePool"] = "pool-a"
    cluster.create(huge)
    cluster.phase("Running")  # first it deploys fine on pool-a's kwok node
    # Make the next rollout impossible: every instance asks for more GPUs than exist.
    cluster.patch_spec(
        {
            "versions": [
                version("1.0.0", 100, timeoutMinutes=3, specification="gpu.1x", computeNodes=40)
            ]
        }
    )
    cluster.phase("Deploying")

    def backdate() -> bool:
        """Time is the operator's memory of when this rollout started: move it back 4 min.

        The operator may write its status at the same moment, so this repeats until the
        operator has acted on the older start.
        """
        status = cluster.rts()["status"]
        if status.get("phase") == "Failed":
            return True
        past = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=4)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        conditions = [
            dict(c, lastTransitionTime=past) if c["type"] == "Progressing" else c
            for c in status["conditions"]
        ]
        cluster.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            cluster.ns,
            "realtimeservices",
            "svc",
            {"status": {"conditions": conditions}},
        )
        time.sleep(3)
        return cluster.rts()["status"].get("phase") == "Failed"

    wait_for(backdate, timeout=120, interval=0.1, what="Failed after the deadline")
    status = cluster.phase("Failed", timeout=60)
    assert "not ready within timeoutMinutes (3)" in status["message"]
    assert (
        next(c for c in status["conditions"] if c["type"] == "Ready")["reason"]
        == "DeploymentTimeout"
    )


def test_running_service_losing_ready_pods_is_abnormal(
    cluster: Cluster, operator: Operator
) -> None:
    cluster.create(app("iris"))
    cluster.create(rts(version("1.0.0", 100)))
    cluster.phase("Running")
    pod = cluster.core.list_namespaced_pod(
        cluster.ns, label_selector=f"{OWNER}=svc,app.kubernetes.io/component=model"
    ).items[0]
    conditions = [
        {"type": c.type, "status": "False" if c.type in ("Ready", "ContainersReady") else c.status}
        for c in pod.status.conditions
    ]
    cluster.core.patch_namespaced_pod_status(
        pod.metadata.name, cluster.ns, {"status": {"conditions": conditions}}
    )
    status = cluster.phase("Abnormal", timeout=60)
    assert status["ready"] == "0/1"


def test_operator_restart_converges_without_duplicates(
    cluster: Cluster, kubeconfig: Path, kwok_nodes: list[str]
) -> None:
    with running_operator(kubeconfig, [cluster.ns]):
        cluster.create(app("iris"))
        cluster.create(rts())
        wait_for(cluster.children, timeout=30, what="first children")
    # The operator is gone mid-rollout; a new one resumes.
    with running_operator(kubeconfig, [cluster.ns]):
        cluster.phase("Running")
        assert len(cluster.children()) == 7
        wait_for(
            lambda: len(cluster.apps.list_namespaced_replica_set(cluster.ns).items) == 3,
            timeout=30,
            what="one ReplicaSet per Deployment",
        )
