"""What the operator keeps of each watched object: the fields the reconcilers read.

The watch caches hold every child of every service, so each kind keeps only what a pass
reads (the names and labels for pruning, our annotations for the applied-spec hash, the
status fields the phase is decided on). A Deployment's pod template, a ConfigMap's router
config or a Pod's spec never stay in memory: about 1 KiB per object instead of 5-20.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from inferops.api.names import GROUP, KIND_APPLICATION, KIND_BATCH, KIND_REALTIME

Obj = dict[str, Any]
# Annotations kept besides our own: the Indexed Job's completion index on a batch pod.
KEPT_ANNOTATIONS = frozenset({"batch.kubernetes.io/job-completion-index"})
META_FIELDS = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
)
# What a Deployment's status says about a rollout (workload_health).
DEPLOYMENT_STATUS = (
    "observedGeneration",
    "replicas",
    "updatedReplicas",
    "readyReplicas",
    "availableReplicas",
    "conditions",
)
CONTAINER_STATUS = ("name", "image", "ready", "started", "restartCount", "state", "lastState")
# The scheduler's verdict on a pod (reconcile.causes: "waiting for a node ...").
POD_CONDITIONS = frozenset({"PodScheduled"})
CONDITION_FIELDS = ("type", "status", "reason", "message", "lastTransitionTime")
# Bytes of a termination message kept (the kubelet caps it at 4096; the worker report
# that a batch pod leaves there is read in full).
MESSAGE_LIMIT = 4096


def _ours(key: str) -> bool:
    return key.startswith(f"{GROUP}/") or key in KEPT_ANNOTATIONS


def metadata(obj: Mapping[str, Any]) -> Obj:
    meta = obj.get("metadata") or {}
    kept: Obj = {k: meta[k] for k in META_FIELDS if k in meta}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if _ours(k)}
    if annotations:
        kept["annotations"] = annotations
    return kept


def _head(obj: Mapping[str, Any]) -> Obj:
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": metadata(obj)}


def _pick(source: Any, fields: tuple[str, ...]) -> Obj:
    if not isinstance(source, Mapping):
        return {}
    return {k: source[k] for k in fields if k in source}


def _state(state: Any) -> Obj:
    """A container state with the termination message bounded."""
    if not isinstance(state, Mapping):
        return {}
    kept = dict(state)
    terminated = kept.get("terminated")
    if isinstance(terminated, Mapping):
        message = str(terminated.get("message") or "")[:MESSAGE_LIMIT]
        kept["terminated"] = {
            **_pick(terminated, ("exitCode", "reason", "startedAt", "finishedAt")),
            **({"message": message} if message else {}),
        }
    return kept


def _container(status: Mapping[str, Any]) -> Obj:
    kept = _pick(status, CONTAINER_STATUS)
    for field in ("state", "lastState"):
        if field in kept:
            kept[field] = _state(kept[field])
    return kept


def _memory_limit(container: Any) -> Obj:
    """A container's name and memory limit (the limit an OOM kill names)."""
    if not isinstance(container, Mapping):
        return {}
    memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    kept: Obj = {"name": container.get("name")}
    if memory:
        kept["resources"] = {"limits": {"memory": memory}}
    return kept


def pod(obj: Mapping[str, Any]) -> Obj:
    status = obj.get("status") or {}
    containers = status.get("containerStatuses") or []
    conditions = [
        {
            **_pick(c, CONDITION_FIELDS),
            **({"message": str(c["message"])[:MESSAGE_LIMIT]} if c.get("message") else {}),
        }
        for c in status.get("conditions") or ()
        if isinstance(c, Mapping) and c.get("type") in POD_CONDITIONS
    ]
    return {
        **_head(obj),
        "spec": {
            "containers": [
                _memory_limit(c) for c in (obj.get("spec") or {}).get("containers") or ()
            ]
        },
        "status": {
            **_pick(status, ("phase", "podIP")),
            **({"conditions": conditions} if conditions else {}),
            "containerStatuses": [_container(c) for c in containers if isinstance(c, Mapping)],
        },
    }


def deployment(obj: Mapping[str, Any]) -> Obj:
    return {
        **_head(obj),
        "spec": _pick(obj.get("spec"), ("replicas",)),
        "status": _pick(obj.get("status"), DEPLOYMENT_STATUS),
    }


def job(obj: Mapping[str, Any]) -> Obj:
    return {
        **_head(obj),
        "spec": _pick(obj.get("spec"), ("suspend", "completions", "parallelism")),
        "status": dict(obj.get("status") or {}),
    }


def own_kind(obj: Mapping[str, Any]) -> Obj:
    """Our own kinds keep spec and status (what a pass decides on), not managedFields or
    a client's last-applied copy of the spec."""
    return {
        **_head(obj),
        "spec": obj.get("spec") or {},
        **({"status": obj["status"]} if "status" in obj else {}),
    }


def head(obj: Mapping[str, Any]) -> Obj:
    """Services, ConfigMaps, NetworkPolicies, HTTPRoutes and Namespaces: a pass needs their
    names, labels and our annotations (the applied-spec hash, quota overrides)."""
    return _head(obj)


TRIMMERS: Mapping[str, Callable[[Mapping[str, Any]], Obj]] = {
    "Pod": pod,
    "Deployment": deployment,
    "Job": job,
    KIND_REALTIME: own_kind,
    KIND_BATCH: own_kind,
    KIND_APPLICATION: own_kind,
}


def trim(obj: Mapping[str, Any]) -> Obj:
    return TRIMMERS.get(str(obj.get("kind")), head)(obj)
