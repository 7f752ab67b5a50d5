"""Per-namespace quotas: real-time services, batch services, public-pool instances.

Defaults come from the catalog; a Namespace annotation overrides each. Real-time services
count whatever their phase (Stopped and Abnormal ones too, as in the seed); instances are
the computeNodes of real-time services in the public pool (dedicated pools do not count).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inferops.api import phases
from inferops.api.catalog import PUBLIC_POOL, Quotas
from inferops.api.names import (
    ANNOTATION_QUOTA_BATCH,
    ANNOTATION_QUOTA_PUBLIC_INSTANCES,
    ANNOTATION_QUOTA_REALTIME,
    KIND_BATCH,
    KIND_REALTIME,
)

Obj = Mapping[str, Any]
REASON = phases.QUOTA_EXCEEDED


@dataclass(frozen=True)
class Limits:
    realtime: int
    batch: int
    public_instances: int | None


def limits_for(quotas: Quotas, annotations: Mapping[str, str] | None) -> tuple[Limits, list[str]]:
    """The namespace's limits, and a note for each annotation that is not a number >= 0."""
    annotations = annotations or {}
    notes: list[str] = []

    def read(key: str, default: int | None) -> int | None:
        text = annotations.get(key)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 0:
            notes.append(f"annotation {key}={text!r} is not a whole number >= 0; using {default}")
            return default
        return value

    realtime = read(ANNOTATION_QUOTA_REALTIME, quotas.real_time_services_per_namespace)
    batch = read(ANNOTATION_QUOTA_BATCH, quotas.batch_services_per_namespace)
    instances = read(ANNOTATION_QUOTA_PUBLIC_INSTANCES, quotas.public_pool_instances_per_namespace)
    return Limits(realtime or 0, batch or 0, instances), notes


def public_instances(obj: Obj) -> int:
    """computeNodes in the public pool (multi-pool services run in dedicated pools)."""
    spec = obj.get("spec") or {}
    multi = spec.get("multiPoolLoadBalancing") or {}
    if isinstance(multi, Mapping) and multi.get("enabled"):
        return 0
    if spec.get("resourcePool", PUBLIC_POOL) != PUBLIC_POOL:
        return 0
    total = 0
    for version in spec.get("versions") or []:
        nodes = version.get("computeNodes", 1) if isinstance(version, Mapping) else 0
        total += nodes if isinstance(nodes, int) and not isinstance(nodes, bool) else 0
    return total


def _age_key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    # Objects not yet stored (an admission request) have no timestamp: they are the newest.
    return (str(meta.get("creationTimestamp") or "9999"), str(meta.get("name") or ""))


def by_age(objects: Sequence[Obj]) -> list[Obj]:
    """Oldest first (creationTimestamp, then name for objects created in the same second)."""
    return sorted(objects, key=_age_key)


def over_quota(
    kind: str,
    objects: Sequence[Obj],
    limits: Limits,
    ordered: bool = False,
    disclose: bool = True,
) -> dict[str, str]:
    """name -> why, for the objects beyond a quota; the oldest objects win.

    `ordered` says the objects are already oldest first (an admission puts the candidate
    last: its creationTimestamp, set by the API server, may tie with older objects').
    `disclose` False leaves the namespace's limits and usage out of the messages (the
    webhook's answer to a caller it cannot authenticate).
    """
    live = [o for o in objects if not (o.get("metadata") or {}).get("deletionTimestamp")]
    ordered_objects = live if ordered else by_age(live)
    refused: dict[str, str] = {}
    if kind == KIND_REALTIME:
        limit = f"{limits.realtime} " if disclose else ""
        for position, obj in enumerate(ordered_objects):
            if position >= limits.realtime:
                refused[obj["metadata"]["name"]] = (
                    f"quota of {limit}real-time services in this namespace is used "
                    "(Stopped and Abnormal services count too; delete one to make room)"
                )
        if limits.public_instances is not None:
            used = 0
            for obj in ordered_objects:
                name = obj["metadata"]["name"]
                if name in refused:
                    continue
                wanted = public_instances(obj)
                if wanted and used + wanted > limits.public_instances:
                    refused[name] = (
                        f"public-pool instance quota of {limits.public_instances} in this "
                        f"namespace: {used} in use, this service asks for {wanted}"
                        if disclose
                        else "public-pool instance quota of this namespace is used: "
                        f"this service asks for {wanted}"
                    )
                else:
                    used += wanted
    elif kind == KIND_BATCH:
        limit = f"{limits.batch} " if disclose else ""
        for position, obj in enumerate(ordered_objects):
            if position >= limits.batch:
                refused[obj["metadata"]["name"]] = (
                    f"quota of {limit}batch services in this namespace is used"
                )
    return refused
