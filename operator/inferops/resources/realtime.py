"""RealTimeService -> per-version Deployments and Services, and the router in front."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inferops.api.application import AppVersion
from inferops.api.catalog import Catalog
from inferops.api.names import KIND_REALTIME, LABEL_APPLICATION, LABEL_POOL, LABEL_VERSION
from inferops.api.realtime import RealTimeServiceSpec, ServiceVersion
from inferops.contract import agent as agent_contract
from inferops.contract import router as router_contract
from inferops.resources.labels import (
    LABEL_COMPONENT,
    OwnerInputs,
    metadata,
    owner_labels,
    version_labels,
)
from inferops.resources.naming import child_name
from inferops.resources.network import realtime_policies
from inferops.resources.nginx import (
    HEALTH_PATH,
    ROUTER_PORT,
    VERSION_HEADER,
    VERSIONS_PATH,
    AgentLink,
    Backend,
    RateLimit,
    Routing,
    nginx_config,
)
from inferops.resources.security import container_security_context, pod_security_context
from inferops.resources.workload import (
    merge_env,
    model_container,
    model_fetch,
    placement,
    storage_env,
)

SERVICE_PORT = 80
VERSION_PORT = 8080
ROUTER_REPLICAS = 2
ROUTER_UID = 101  # the nginx user of the router image (images/router/Dockerfile)
CONFIG_HASH = "serving.inferops.dev/config-hash"
CONFIG_DIR = "/etc/inferops"
METRICS_PORT = router_contract.DEFAULT_METRICS_PORT

VersionKey = tuple[str, str]


@dataclass(frozen=True)
class Inputs(OwnerInputs):
    """Everything the builder reads: the object, its parsed spec, the app versions, catalog."""

    obj: Mapping[str, Any]
    spec: RealTimeServiceSpec
    versions: Mapping[VersionKey, AppVersion]
    catalog: Catalog
    router_note: str = ""
    compare_shadows: bool = False


def version_service_name(service: str, entry: ServiceVersion) -> str:
    return child_name(service, entry.application, entry.version)


def router_name(service: str) -> str:
    return f"{service}-router"


def placements(inputs: Inputs, entry: ServiceVersion) -> list[tuple[str | None, int]]:
    """(pool pinned by name or None, replicas) per Deployment of one version."""
    nodes = 0 if inputs.spec.stopped else entry.compute_nodes
    multi = inputs.spec.multi_pool_load_balancing
    if multi is not None and multi.enabled and multi.pools:
        return [(pool, nodes // 2) for pool in multi.pools]
    return [(None, nodes)]


def replicas_for(inputs: Inputs, labels: Mapping[str, str]) -> int | None:
    """The replicas the spec asks of the Deployment with these labels (a model's or the
    router's); None for a version the spec no longer names (left as it is)."""
    if labels.get(LABEL_COMPONENT) == "router":
        return 0 if inputs.spec.stopped else ROUTER_REPLICAS
    for entry in inputs.spec.versions:
        if (labels.get(LABEL_APPLICATION), labels.get(LABEL_VERSION)) != (
            entry.application,
            entry.version,
        ):
            continue
        for pool, replicas in placements(inputs, entry):
            if pool == labels.get(LABEL_POOL):
                return replicas
    return 0 if inputs.spec.stopped else None


def model_deployment(
    inputs: Inputs, entry: ServiceVersion, pool_name: str | None, replicas: int
) -> dict[str, Any]:
    version = inputs.versions[(entry.application, entry.version)]
    flavor = inputs.catalog.flavor(entry.specification)
    if flavor is None:
        raise ValueError(f"unknown flavor {entry.specification!r}")
    pool = inputs.catalog.pool(pool_name or inputs.spec.resource_pool)
    base = version_service_name(inputs.name, entry)
    name = child_name(base, pool_name) if pool_name else base
    labels = version_labels(KIND_REALTIME, inputs.name, entry.application, entry.version, pool_name)
    selector = {k: v for k, v in labels.items() if k != LABEL_COMPONENT}
    env = merge_env(version.env, entry.env)
    init, volumes = model_fetch(version, inputs.catalog, inputs.spec.storage)
    collect = inputs.spec.data_collection
    collecting = collect is not None and collect.enabled
    containers = [
        model_container(
            version, env, flavor, entry.timeout_minutes, port_name="model" if collecting else "http"
        )
    ]
    if collecting:
        containers.append(agent_container(inputs, entry, version.port))
    pod_spec: dict[str, Any] = {
        "securityContext": pod_security_context(),
        "containers": containers,
        # No container here calls the Kubernetes API: no token for the user's image to read.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        **placement(pool),
    }
    if init:
        pod_spec["initContainers"] = init
        pod_spec["volumes"] = volumes
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, inputs.namespace, labels, inputs.obj),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "progressDeadlineSeconds": entry.timeout_minutes * 60,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def agent_options(
    inputs: Inputs, entry: ServiceVersion, model_port: int
) -> agent_contract.AgentOptions:
    """What the agent of one version runs with; the pod name comes from its env (POD_NAME,
    set in `agent_container`), storage endpoint and credentials too."""
    collect = inputs.spec.data_collection
    if collect is None or collect.output_path is None:
        raise ValueError("dataCollection.outputPath is required when data collection is enabled")
    return agent_contract.AgentOptions(
        output=collect.output_path,
        upstream=f"http://127.0.0.1:{model_port}",
        sample_ratio=collect.sample_ratio,
        service=inputs.name,
        version=f"{entry.application}:{entry.version}",
        redact_headers=agent_contract.name_list(collect.redact_headers or ()),
        redact_query_parameters=agent_contract.name_list(collect.redact_query_parameters or ()),
    )


def agent_container(inputs: Inputs, entry: ServiceVersion, model_port: int) -> dict[str, Any]:
    """`inferops agent` in front of the model: proxies every request, samples pairs into
    dataCollection.outputPath. It takes the port the version's Service targets."""
    options = agent_options(inputs, entry, model_port)
    return {
        "name": "agent",
        "image": inputs.catalog.images.inferops,
        "args": options.argv(),
        "env": [
            {
                "name": agent_contract.POD_ENV,
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
            },
            *storage_env(inputs.spec.storage),
        ],
        "ports": [{"name": "http", "containerPort": options.port, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": agent_contract.HEALTH_PATH, "port": "http"},
            "periodSeconds": 10,
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "securityContext": container_security_context(read_only_root=True),
    }


def version_service(inputs: Inputs, entry: ServiceVersion) -> dict[str, Any]:
    labels = version_labels(KIND_REALTIME, inputs.name, entry.application, entry.version)
    selector = {k: v for k, v in labels.items() if k != LABEL_COMPONENT}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(
            version_service_name(inputs.name, entry), inputs.namespace, labels, inputs.obj
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [
                {"name": "http", "port": VERSION_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def backends(inputs: Inputs) -> list[Backend]:
    suffix = f".{inputs.namespace}.svc.cluster.local:{VERSION_PORT}"
    return [
        Backend(
            version_service_name(inputs.name, e),
            version_service_name(inputs.name, e) + suffix,
            e.traffic_ratio,
            f"{e.application}:{e.version}",
            e.shadow.sample_percent if e.shadow is not None else None,
        )
        for e in inputs.spec.versions
    ]


def pairing(inputs: Inputs) -> router_contract.Pairing | None:
    """With data collection on, shadowed requests are written with both answers; during
    a rollout's shadow step they are compared (and counted) without being written."""
    if not inputs.spec.shadows():
        return None
    collect = inputs.spec.data_collection
    if collect is None or not collect.enabled or collect.output_path is None:
        return router_contract.Pairing() if inputs.compare_shadows else None
    return router_contract.Pairing(
        output=collect.output_path,
        sample_ratio=collect.sample_ratio,
        redact_headers=agent_contract.name_list(collect.redact_headers or ()),
        redact_query_parameters=agent_contract.name_list(collect.redact_query_parameters or ()),
    )


def router_agent_config(inputs: Inputs) -> router_contract.RouterAgentConfig:
    """What the router agent beside nginx runs with (router.json of the ConfigMap)."""
    return router_contract.RouterAgentConfig(
        service=inputs.name,
        targets=tuple(
            router_contract.Target(
                upstream=b.name, label=b.shown, address=b.address, shadow_percent=b.shadow_percent
            )
            for b in backends(inputs)
        ),
        pairing=pairing(inputs),
    )


def router_config(inputs: Inputs) -> str:
    limit = inputs.spec.traffic_limit
    routing = inputs.spec.routing_or_default()
    sticky = routing.sticky_by
    return nginx_config(
        backends(inputs),
        websocket=inputs.spec.websocket,
        limit=RateLimit(limit.requests_per_second, limit.burst) if limit else None,
        replicas=ROUTER_REPLICAS,
        worker_processes="2",
        version_header=inputs.catalog.router.version_header,
        routing=Routing(
            pin_header=routing.pin_header,
            sticky_header=sticky.header if sticky else None,
            sticky_cookie=sticky.cookie if sticky else None,
        ),
        link=AgentLink(pairing=pairing(inputs) is not None),
        note=inputs.router_note,
    )


def _nginx_container(inputs: Inputs) -> dict[str, Any]:
    return {
        "name": "nginx",
        "image": inputs.catalog.images.router,
        "args": ["nginx", "-g", "daemon off;", "-c", f"{CONFIG_DIR}/nginx.conf"],
        "ports": [{"name": "http", "containerPort": ROUTER_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": HEALTH_PATH, "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": HEALTH_PATH, "port": "http"}, "periodSeconds": 10},
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"cpu": "1", "memory": "256Mi"},
        },
        "securityContext": container_security_context(read_only_root=True),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "run", "mountPath": router_contract.RUNTIME_DIR},
        ],
    }


def _agent_container(inputs: Inputs, pairs: bool) -> dict[str, Any]:
    """`inferops router-agent`: metrics from nginx's log, the shadow relay, pairs."""
    env: list[dict[str, Any]] = [
        {"name": agent_contract.POD_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]
    if pairs:
        env += storage_env(inputs.spec.storage)
    return {
        "name": "agent",
        "image": inputs.catalog.images.inferops,
        "args": [
            router_contract.COMMAND,
            "--config",
            f"{CONFIG_DIR}/{router_contract.CONFIG_FILE}",
        ],
        "env": env,
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": router_contract.HEALTH_PATH, "port": "metrics"},
            "periodSeconds": 10,
        },
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "1", "memory": "256Mi" if not pairs else "512Mi"},
        },
        "securityContext": container_security_context(read_only_root=True),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "run", "mountPath": router_contract.RUNTIME_DIR},
        ],
    }


def router_digest(inputs: Inputs) -> str:
    """The config hash of the router pods running what these inputs build."""
    return _digest(router_config(inputs), router_agent_config(inputs).to_json())


def _digest(config: str, agent_json: str) -> str:
    return hashlib.sha256((config + agent_json).encode()).hexdigest()[:16]


def router_objects(inputs: Inputs) -> list[dict[str, Any]]:
    name = router_name(inputs.name)
    labels = {**owner_labels(KIND_REALTIME, inputs.name), LABEL_COMPONENT: "router"}
    config = router_config(inputs)
    agent_config = router_agent_config(inputs)
    agent_json = agent_config.to_json()
    digest = _digest(config, agent_json)  # the configs built once per pass
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(name, inputs.namespace, labels, inputs.obj),
        "data": {"nginx.conf": config, router_contract.CONFIG_FILE: agent_json},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, inputs.namespace, labels, inputs.obj),
        "spec": {
            "replicas": 0 if inputs.spec.stopped else ROUTER_REPLICAS,
            "selector": {"matchLabels": labels},
            "template": {
                # A new config rolls the router pods (only them): nginx reads it at start.
                "metadata": {"labels": labels, "annotations": {CONFIG_HASH: digest}},
                "spec": {
                    "securityContext": pod_security_context(ROUTER_UID),
                    "containers": [
                        _nginx_container(inputs),
                        _agent_container(inputs, agent_config.pairing is not None),
                    ],
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "volumes": [
                        {"name": "config", "configMap": {"name": name}},
                        {"name": "tmp", "emptyDir": {}},
                        {"name": "run", "emptyDir": {"sizeLimit": "1Mi"}},
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(inputs.name, inputs.namespace, labels, inputs.obj),
        "spec": {
            "type": "ClusterIP",
            "selector": labels,
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"},
                {
                    "name": "metrics",
                    "port": METRICS_PORT,
                    "targetPort": "metrics",
                    "protocol": "TCP",
                },
            ],
        },
    }
    return [config_map, deployment, service]


def route_prefix(namespace: str, name: str) -> str:
    """Where a service lives on the shared Gateway: one path per service, so that the routes
    of different services never compete for the same requests."""
    return f"/{namespace}/{name}"


def _backend_ref(inputs: Inputs, entry: ServiceVersion, weight: int | None) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": version_service_name(inputs.name, entry), "port": VERSION_PORT}
    if weight is not None:
        ref["weight"] = weight
    if inputs.catalog.router.version_header:
        ref["filters"] = [
            {
                "type": "ResponseHeaderModifier",
                "responseHeaderModifier": {
                    "set": [
                        {"name": VERSION_HEADER, "value": f"{entry.application}:{entry.version}"}
                    ]
                },
            }
        ]
    return ref


def _parent(inputs: Inputs) -> dict[str, Any]:
    gateway = inputs.catalog.router.gateway
    if gateway is None:
        raise ValueError("router.gateway is required in gateway-api mode")
    parent: dict[str, Any] = {"name": gateway.name}
    if gateway.namespace:
        parent["namespace"] = gateway.namespace
    return parent


def _rewrite() -> dict[str, Any]:
    # The prefix the rule matched is cut off: the model serves its API at /.
    return {
        "type": "URLRewrite",
        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
    }


def http_route(inputs: Inputs) -> dict[str, Any]:
    """Gateway API mode: weighted backendRefs instead of the nginx router, under the
    service's own path prefix, which is cut off again before the request reaches a model
    (the model serves its API at /). Pinning is a rule per version matching the pin header's
    exact value; a pin header naming no version matches a rule without backends, which the
    Gateway answers 404 (the version paths are `versions_route`). Shadows are RequestMirror
    filters of the split rule with their sample percent."""
    parent = _parent(inputs)
    prefix = route_prefix(inputs.namespace, inputs.name)
    pin = inputs.spec.routing_or_default().pin_header
    split_filters = [_rewrite()] + [
        {
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": {"name": version_service_name(inputs.name, e), "port": VERSION_PORT},
                "percent": e.shadow.sample_percent,
            },
        }
        for e in inputs.spec.versions
        if e.shadow is not None
    ]
    rules: list[dict[str, Any]] = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
            "filters": split_filters,
            "backendRefs": [
                _backend_ref(inputs, e, e.traffic_ratio)
                for e in inputs.spec.versions
                if e.shadow is None
            ],
        }
    ]
    for e in inputs.spec.versions:
        label = f"{e.application}:{e.version}"
        rules.append(
            {
                "matches": [
                    {
                        "path": {"type": "PathPrefix", "value": prefix},
                        "headers": [{"type": "Exact", "name": pin, "value": label}],
                    }
                ],
                "filters": [_rewrite()],
                "backendRefs": [_backend_ref(inputs, e, None)],
            }
        )
    rules.append(
        {
            "matches": [
                {
                    "path": {"type": "PathPrefix", "value": prefix},
                    "headers": [{"type": "RegularExpression", "name": pin, "value": ".*"}],
                }
            ]
        }
    )
    return _route(inputs, inputs.name, parent, rules)


def _route(
    inputs: Inputs, name: str, parent: dict[str, Any], rules: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": metadata(
            name, inputs.namespace, owner_labels(KIND_REALTIME, inputs.name), inputs.obj
        ),
        "spec": {"parentRefs": [parent], "rules": rules},
    }


def versions_route_name(service: str) -> str:
    return f"{service}-versions"


def versions_route(inputs: Inputs) -> dict[str, Any]:
    """`/versions/<application>:<version>/` of every version, in a route of its own: a URL
    rewrite needs a rule per path, and one HTTPRoute holds 16 rules."""
    parent = _parent(inputs)
    prefix = route_prefix(inputs.namespace, inputs.name)
    rules = [
        {
            "matches": [
                {
                    "path": {
                        "type": "PathPrefix",
                        "value": f"{prefix}{VERSIONS_PATH}{e.application}:{e.version}",
                    }
                }
            ],
            "filters": [_rewrite()],
            "backendRefs": [_backend_ref(inputs, e, None)],
        }
        for e in inputs.spec.versions
    ]
    return _route(inputs, versions_route_name(inputs.name), parent, rules)


def realtime_children(inputs: Inputs) -> list[dict[str, Any]]:
    """Every child of a RealTimeService, in apply order (backends before the router)."""
    children: list[dict[str, Any]] = []
    for entry in inputs.spec.versions:
        for pool, replicas in placements(inputs, entry):
            children.append(model_deployment(inputs, entry, pool, replicas))
        children.append(version_service(inputs, entry))
    nginx = inputs.catalog.router.mode != "gateway-api"
    if nginx:
        children += router_objects(inputs)
    else:
        children += [http_route(inputs), versions_route(inputs)]
    if inputs.catalog.network_policies.enabled:
        children += realtime_policies(inputs.obj, inputs.catalog.network_policies, router=nginx)
    return children


def service_url(inputs: Inputs) -> str | None:
    """The stable in-cluster URL; in gateway-api mode the service's path on the Gateway,
    when the catalog says where the Gateway is."""
    router = inputs.catalog.router
    if router.mode == "gateway-api":
        if router.gateway is None or router.gateway.url is None:
            return None
        return router.gateway.url.rstrip("/") + route_prefix(inputs.namespace, inputs.name)
    return f"http://{inputs.name}.{inputs.namespace}.svc.cluster.local"
