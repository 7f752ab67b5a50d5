"""The control plane itself behaves like a real cluster (no project CRDs needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from k8s_helpers import Kubectl, wait_for
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

pytestmark = pytest.mark.cluster

PAUSE = "registry.k8s.io/pause:3.10"


def _deployment(
    name: str, replicas: int, node_selector: dict[str, str] | None = None
) -> dict[str, Any]:
    labels = {"app": name}
    pod_spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": PAUSE, "resources": {"requests": {"cpu": "10m"}}}],
        "terminationGracePeriodSeconds": 0,
    }
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def test_readyz_and_version(cluster_kubectl: Kubectl) -> None:
    assert cluster_kubectl("get", "--raw", "/readyz").strip() == "ok"
    version = json.loads(cluster_kubectl("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"].startswith("v1.")


def test_server_side_apply_is_idempotent(cluster_api_client: Any, namespace: str) -> None:
    dyn = DynamicClient(cluster_api_client)
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    body = _deployment("ssa", 1)

    first = deployments.server_side_apply(body=body, namespace=namespace, field_manager="inferops")
    # The deployment controller writes status (and so resourceVersion) at any moment: what
    # must not move on a repeated apply is the generation, i.e. the spec we manage.
    second = deployments.server_side_apply(body=body, namespace=namespace, field_manager="inferops")
    assert second.metadata.generation == first.metadata.generation == 1
    assert second.spec.to_dict() == first.spec.to_dict()

    # An object no controller touches shows that the repeated apply writes nothing at all.
    config_maps = dyn.resources.get(api_version="v1", kind="ConfigMap")
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ssa"},
        "data": {"k": "v"},
    }
    cm1 = config_maps.server_side_apply(body=config, namespace=namespace, field_manager="inferops")
    cm2 = config_maps.server_side_apply(body=config, namespace=namespace, field_manager="inferops")
    assert cm2.metadata.resourceVersion == cm1.metadata.resourceVersion
    managers = {(m.manager, m.operation) for m in second.metadata.managedFields}
    assert ("inferops", "Apply") in managers

    # a real change is applied and bumps the generation
    body["spec"]["replicas"] = 0
    third = deployments.server_side_apply(body=body, namespace=namespace, field_manager="inferops")
    assert third.metadata.generation == 2
    assert third.spec.replicas == 0


def test_owner_deletion_garbage_collects_children(cluster_api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(cluster_api_client)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"), data={"a": "1"})
    )
    ref = client.V1OwnerReference(
        api_version="v1",
        kind="ConfigMap",
        name="owner",
        uid=owner.metadata.uid,
        block_owner_deletion=True,
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="child", owner_references=[ref])),
    )
    core.delete_namespaced_config_map("owner", namespace)

    def child_gone() -> bool:
        try:
            core.read_namespaced_config_map("child", namespace)
            return False
        except ApiException as e:
            if e.status == 404:
                return True
            raise

    wait_for(child_gone, timeout=60, what="the garbage collector to delete the child ConfigMap")


def test_rbac_is_enforced_for_service_account_tokens(
    cluster_api_client: Any, namespace: str, cluster_kubeconfig: Any
) -> None:
    core = client.CoreV1Api(cluster_api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="sa"))
    )
    token = core.create_namespaced_service_account_token(
        "sa",
        namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    ).status.token

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster_kubeconfig), client_configuration=cfg)
    cfg.cert_file = cfg.key_file = None
    cfg.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(cfg) as as_sa:
        sa_core = client.CoreV1Api(as_sa)
        with pytest.raises(ApiException) as denied:
            sa_core.list_namespaced_config_map(namespace)
        assert denied.value.status == 403

        rbac = client.RbacAuthorizationV1Api(cluster_api_client)
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "cm-reader"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "cm-reader"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "cm-reader",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": namespace}],
            },
        )

        def allowed() -> bool:
            try:
                sa_core.list_namespaced_config_map(namespace)
                return True
            except ApiException as e:
                if e.status == 403:
                    return False
                raise

        wait_for(allowed, timeout=30, what="the RoleBinding to take effect")


def test_deployment_pods_become_ready_on_kwok_nodes(
    cluster_api_client: Any, namespace: str, kwok_nodes: list[str]
) -> None:
    apps = client.AppsV1Api(cluster_api_client)
    apps.create_namespaced_deployment(namespace, _deployment("web", 2))

    def ready() -> bool:
        d = apps.read_namespaced_deployment("web", namespace)
        return (d.status.ready_replicas or 0) == 2

    wait_for(ready, timeout=90, what="2 ready replicas")
    pods = (
        client.CoreV1Api(cluster_api_client)
        .list_namespaced_pod(namespace, label_selector="app=web")
        .items
    )
    assert len(pods) == 2
    assert {p.spec.node_name for p in pods} <= set(kwok_nodes)
    assert all(p.status.phase == "Running" for p in pods)


@pytest.mark.parametrize("pool", ["pool-a", "pool-b"])
def test_pool_node_selector_pins_pods(
    cluster_api_client: Any, namespace: str, kwok_nodes: list[str], pool: str
) -> None:
    core = client.CoreV1Api(cluster_api_client)
    pool_nodes = {
        n.metadata.name
        for n in core.list_node(label_selector=f"serving.inferops.dev/pool={pool}").items
    }
    if not pool_nodes:
        pytest.skip(f"no node labelled serving.inferops.dev/pool={pool}")
    apps = client.AppsV1Api(cluster_api_client)
    apps.create_namespaced_deployment(
        namespace, _deployment("pinned", 2, {"serving.inferops.dev/pool": pool})
    )
    wait_for(
        lambda: (
            (apps.read_namespaced_deployment("pinned", namespace).status.ready_replicas or 0) == 2
        ),
        timeout=90,
        what="2 ready pinned replicas",
    )
    pods = core.list_namespaced_pod(namespace, label_selector="app=pinned").items
    assert {p.spec.node_name for p in pods} <= pool_nodes


def test_indexed_job_completes_on_kwok_nodes(
    cluster_api_client: Any, namespace: str, kwok_nodes: list[str]
) -> None:
    batch = client.BatchV1Api(cluster_api_client)
    batch.create_namespaced_job(
        namespace,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "work"},
            "spec": {
                "completionMode": "Indexed",
                "completions": 3,
                "parallelism": 3,
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "main",
                                "image": "busybox:1.36",
                                "command": ["sh", "-c", "true"],
                            }
                        ],
                    }
                },
            },
        },
    )

    def complete() -> bool:
        job = batch.read_namespaced_job("work", namespace)
        conds = {c.type: c.status for c in (job.status.conditions or [])}
        assert conds.get("Failed") != "True", job.status
        return conds.get("Complete") == "True"

    wait_for(complete, timeout=90, what="the Indexed Job to complete")
    job = batch.read_namespaced_job("work", namespace)
    assert job.status.succeeded == 3
    assert job.status.completed_indexes == "0-2"


def test_kwok_nodes_scale_for_thousands_of_pods() -> None:
    from controlplane import DEFAULT_NODES, kwok_nodes

    assert kwok_nodes() == DEFAULT_NODES  # what every test runs on unless asked
    big = kwok_nodes(2200, public_nodes=3)
    assert sorted(big) == [
        "kwok-pool-a-0",
        "kwok-pool-b-0",
        "kwok-public-0",
        "kwok-public-1",
        "kwok-public-2",
    ]
    public = big["kwok-public-2"][1]
    assert (public["pods"], public["cpu"], public["memory"]) == ("2200", "8800", "17600Gi")
    with pytest.raises(ValueError, match=">= 1"):
        kwok_nodes(0)


def test_the_service_range_holds_more_than_a_slash_24(
    cluster_api_client: Any, namespace: str
) -> None:
    """A RealTimeService makes three Services: 100 of them need more than 254 ClusterIPs."""
    import ipaddress

    from controlplane import SERVICE_CIDR

    core = client.CoreV1Api(cluster_api_client)
    for i in range(300):
        core.create_namespaced_service(
            namespace,
            {
                "metadata": {"name": f"s{i}"},
                "spec": {"ports": [{"port": 80}], "selector": {"app": "none"}},
            },
        )
    ips = {s.spec.cluster_ip for s in core.list_namespaced_service(namespace).items}
    assert len(ips) == 300
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(SERVICE_CIDR) for ip in ips)
