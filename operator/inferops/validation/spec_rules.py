"""The invariants the CRD's CEL rules hold, in Python, with the same messages and paths.

Each function takes a parsed spec and yields (path, message); the table tests prove these
agree with the CEL rules in crds/.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator, Sequence

from inferops.api.application import MSG_UNIQUE_VERSIONS, AIApplicationSpec
from inferops.api.base import MSG_VALUE_FROM_ONE, MSG_VALUE_XOR, EnvVar
from inferops.api.batch import BatchServiceSpec
from inferops.api.realtime import (
    MAX_SHADOWS,
    MSG_COLLECTION_OUTPUT,
    MSG_MULTIPOOL_NODES,
    MSG_MULTIPOOL_POOLS,
    MSG_RATIO_SUM,
    MSG_ROLLOUT_END,
    MSG_ROLLOUT_VERSION,
    MSG_SHADOW_COUNT,
    MSG_SHADOW_RATIO,
    MSG_STICKY_ONE,
    MSG_UNIQUE_PAIRS,
    MSG_WEBSOCKET_COLLECTION,
    MSG_WEBSOCKET_IMMUTABLE,
    MSG_WEBSOCKET_LIMIT,
    MSG_WEBSOCKET_ROLLOUT,
    MSG_WEBSOCKET_SHADOW,
    RealTimeServiceSpec,
)
from inferops.api.rollout import MSG_GATE_NEEDED, MSG_SHADOW_STEP, MSG_STEPS_INCREASE

Finding = tuple[str, str]


def env_rules(env: Sequence[EnvVar] | None, path: str) -> Iterator[Finding]:
    for i, var in enumerate(env or ()):
        if var.value is not None and var.value_from is not None:
            yield f"{path}[{i}]", MSG_VALUE_XOR
        source = var.value_from
        if source is not None:
            refs = [source.secret_key_ref, source.config_map_key_ref, source.field_ref]
            if sum(r is not None for r in refs) != 1:
                yield f"{path}[{i}].valueFrom", MSG_VALUE_FROM_ONE


def realtime_rules(spec: RealTimeServiceSpec) -> Iterator[Finding]:
    total = sum(v.traffic_ratio for v in spec.versions)
    if total != 100:
        yield "spec.versions", MSG_RATIO_SUM.format(total=total)
    pairs = Counter((v.application, v.version) for v in spec.versions)
    if any(n > 1 for n in pairs.values()):
        yield "spec.versions", MSG_UNIQUE_PAIRS
    multi = spec.multi_pool_load_balancing
    if multi is not None and multi.enabled:
        pools = multi.pools
        if pools is None or len(pools) != 2 or pools[0] == pools[1]:
            yield "spec.multiPoolLoadBalancing.pools", MSG_MULTIPOOL_POOLS
        if not all(v.compute_nodes >= 2 and v.compute_nodes % 2 == 0 for v in spec.versions):
            yield "spec.versions", MSG_MULTIPOOL_NODES
    if spec.websocket and spec.traffic_limit is not None:
        yield "spec.trafficLimit", MSG_WEBSOCKET_LIMIT
    collection = spec.data_collection
    if spec.websocket and collection is not None and collection.enabled:
        yield "spec.dataCollection", MSG_WEBSOCKET_COLLECTION
    if collection is not None and collection.enabled and collection.output_path is None:
        yield "spec.dataCollection.outputPath", MSG_COLLECTION_OUTPUT
    yield from _routing_rules(spec)
    yield from _rollout_rules(spec)
    for i, version in enumerate(spec.versions):
        yield from env_rules(version.env, f"spec.versions[{i}].env")


def _routing_rules(spec: RealTimeServiceSpec) -> Iterator[Finding]:
    """Shadows and stickiness."""
    shadows = spec.shadows()
    if spec.websocket and shadows:
        yield "spec.versions", MSG_WEBSOCKET_SHADOW
    if len(shadows) > MAX_SHADOWS:
        yield "spec.versions", MSG_SHADOW_COUNT
    sticky = spec.routing.sticky_by if spec.routing is not None else None
    if sticky is not None and (sticky.header is None) == (sticky.cookie is None):
        yield "spec.routing.stickyBy", MSG_STICKY_ONE
    for i, version in enumerate(spec.versions):
        if version.shadow is not None and version.traffic_ratio != 0:
            yield f"spec.versions[{i}].trafficRatio", MSG_SHADOW_RATIO


def _rollout_rules(spec: RealTimeServiceSpec) -> Iterator[Finding]:
    rollout = spec.rollout
    if rollout is None:
        return
    percents = [s.percent for s in rollout.steps]
    if any(b <= a for a, b in itertools.pairwise(percents)):
        yield "spec.rollout.steps", MSG_STEPS_INCREASE
    for i, step in enumerate(rollout.steps):
        if (step.percent > 0) == (step.shadow_percent is not None):
            yield f"spec.rollout.steps[{i}]", MSG_SHADOW_STEP
    if not rollout.gates.any_gate():
        yield "spec.rollout.gates", MSG_GATE_NEEDED
    version = next(
        (
            v
            for v in spec.versions
            if f"{v.application}:{v.version}" == rollout.version and v.shadow is None
        ),
        None,
    )
    if version is None:
        yield "spec.rollout.version", MSG_ROLLOUT_VERSION
    elif version.traffic_ratio != percents[-1]:
        yield "spec.rollout.steps", MSG_ROLLOUT_END
    if spec.websocket:
        yield "spec.rollout", MSG_WEBSOCKET_ROLLOUT


def realtime_transition_rules(
    spec: RealTimeServiceSpec, old: RealTimeServiceSpec
) -> Iterator[Finding]:
    if spec.websocket != old.websocket:
        yield "spec.websocket", MSG_WEBSOCKET_IMMUTABLE


def batch_rules(spec: BatchServiceSpec) -> Iterator[Finding]:
    yield from env_rules(spec.env, "spec.env")


def application_rules(spec: AIApplicationSpec) -> Iterator[Finding]:
    names = Counter(v.version for v in spec.versions)
    if any(n > 1 for n in names.values()):
        yield "spec.versions", MSG_UNIQUE_VERSIONS
    for i, version in enumerate(spec.versions):
        yield from env_rules(version.env, f"spec.versions[{i}].env")
