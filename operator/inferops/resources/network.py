"""NetworkPolicies beside a service's pods: who may reach them, and on request what they
may reach (the catalog's `networkPolicies`).

- Model pods take traffic only on their service port ("http": the agent when data
  collection is on, else the model) and only from their own router; in gateway-api mode
  the Gateway's pods, which the operator cannot name, send it, so from `ingressFrom` (or
  any source).
- Router pods take traffic on their port from `ingressFrom`, or any source, and scrapes of
  their metrics port from `metricsFrom`, or any source.
- Batch pods take none: the worker calls its model on 127.0.0.1 inside the pod.
- Egress stays open unless `restrictEgress`: then DNS, a router its own model pods, and the
  `egressTo` peers (the object store fetch-model, the agent and the worker write to).

A NetworkPolicy selects pods; the kubelet's probes come from the node, which every common
network plugin lets through. Enforcement is the network plugin's: without one that
implements NetworkPolicy the objects exist and change nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from inferops.api.catalog import NetworkPolicies
from inferops.api.names import KIND_BATCH, KIND_REALTIME
from inferops.resources.labels import LABEL_COMPONENT, metadata, owner_labels
from inferops.resources.naming import child_name

Obj = dict[str, Any]


def _http() -> list[Obj]:
    """The service port: the container port named http (the agent when data collection is
    on, the model otherwise; never the model's own port behind the agent)."""
    return [{"protocol": "TCP", "port": "http"}]


def _dns() -> Obj:
    return {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}


def _policy(
    name: str,
    namespace: str,
    owner: Mapping[str, Any],
    pods: Mapping[str, str],
    *,
    ingress: list[Obj],
    egress: list[Obj] | None,
) -> Obj:
    """Ingress limited to `ingress` (empty: none); egress to `egress` when given."""
    kind = str(owner["kind"])
    spec: Obj = {"podSelector": {"matchLabels": dict(pods)}, "policyTypes": ["Ingress"]}
    spec["ingress"] = ingress
    if egress is not None:
        spec["policyTypes"].append("Egress")
        spec["egress"] = egress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, namespace, owner_labels(kind, owner["metadata"]["name"]), owner),
        "spec": spec,
    }


def _from(peers: Sequence[Obj], port: str = "http") -> Obj:
    """An ingress rule on a named port, from these peers (none: any source)."""
    rule: Obj = {"ports": [{"protocol": "TCP", "port": port}]}
    if peers:
        rule["from"] = copy.deepcopy(list(peers))
    return rule


def _egress(config: NetworkPolicies, *extra: Obj) -> list[Obj] | None:
    if not config.restrict_egress:
        return None
    rules = [_dns(), *extra]
    if config.egress_to:
        rules.append({"to": copy.deepcopy(config.egress_to)})
    return rules


def component(kind: str, name: str, which: str) -> dict[str, str]:
    return {**owner_labels(kind, name), LABEL_COMPONENT: which}


def realtime_policies(
    owner: Mapping[str, Any], config: NetworkPolicies, *, router: bool
) -> list[Obj]:
    """The model pods' policy, and the router's when the nginx router runs (`router`)."""
    name, namespace = str(owner["metadata"]["name"]), str(owner["metadata"]["namespace"])
    models = component(KIND_REALTIME, name, "model")
    routers = component(KIND_REALTIME, name, "router")
    if router:
        into_models = {"from": [{"podSelector": {"matchLabels": dict(routers)}}], "ports": _http()}
    else:
        into_models = _from(config.ingress_from)
    policies = [
        _policy(
            child_name(name, "models"),
            namespace,
            owner,
            models,
            ingress=[into_models],
            egress=_egress(config),
        )
    ]
    if router:
        to_models = {"to": [{"podSelector": {"matchLabels": dict(models)}}], "ports": _http()}
        policies.append(
            _policy(
                f"{name}-router",
                namespace,
                owner,
                routers,
                ingress=[_from(config.ingress_from), _from(config.metrics_from, "metrics")],
                egress=_egress(config, to_models),
            )
        )
    return policies


def batch_policies(owner: Mapping[str, Any], config: NetworkPolicies) -> list[Obj]:
    """No ingress for the Job's pods."""
    name, namespace = str(owner["metadata"]["name"]), str(owner["metadata"]["namespace"])
    pods = component(KIND_BATCH, name, "batch")
    return [_policy(name, namespace, owner, pods, ingress=[], egress=_egress(config))]
