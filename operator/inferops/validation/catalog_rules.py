"""Rules that need the operator's catalog: flavors, pools, free flavors, the public pool."""

from __future__ import annotations

from collections.abc import Iterator

from inferops.api.batch import BatchServiceSpec
from inferops.api.catalog import Catalog, Flavor
from inferops.api.realtime import RealTimeServiceSpec

Finding = tuple[str, str]


def _flavor(catalog: Catalog, name: str, path: str) -> tuple[Flavor | None, Finding | None]:
    flavor = catalog.flavor(name)
    if flavor is None:
        known = ", ".join(f.name for f in catalog.flavors)
        return None, (path, f"unknown flavor {name!r}; the catalog offers: {known}")
    return flavor, None


def _usable_pools(
    spec: RealTimeServiceSpec, catalog: Catalog, found: list[str]
) -> Iterator[Finding]:
    """Problems with the pools the service runs in; the usable ones are added to `found`."""
    multi = spec.multi_pool_load_balancing
    if multi is None or not multi.enabled:
        if catalog.pool(spec.resource_pool) is not None:
            found.append(spec.resource_pool)
        else:
            known = ", ".join(p.name for p in catalog.pools)
            yield "spec.resourcePool", f"unknown pool {spec.resource_pool!r}; known pools: {known}"
        return
    for j, name in enumerate(multi.pools or []):
        pool = catalog.pool(name)
        path = f"spec.multiPoolLoadBalancing.pools[{j}]"
        if pool is None:
            yield path, f"unknown pool {name!r}"
        elif pool.type != "dedicated":
            yield (
                path,
                f"pool {name!r} is {pool.type}; multi-pool load balancing needs dedicated pools",
            )
        else:
            found.append(name)


GATEWAY_REFUSES = "not supported with the gateway-api router (the catalog's router.mode)"


MAX_GATEWAY_VERSIONS = 14  # an HTTPRoute holds 16 rules: the split, one per version, unknown


def _gateway_rules(spec: RealTimeServiceSpec) -> Iterator[Finding]:
    """What an HTTPRoute cannot express; silently not doing it would be worse."""
    if len(spec.versions) > MAX_GATEWAY_VERSIONS:
        yield (
            "spec.versions",
            f"{GATEWAY_REFUSES}: at most {MAX_GATEWAY_VERSIONS} versions (an HTTPRoute holds "
            f"16 rules: the split, one per version for pinning, one for unknown pins); "
            f"this service has {len(spec.versions)}",
        )
    if spec.traffic_limit is not None:
        yield "spec.trafficLimit", f"{GATEWAY_REFUSES}; limit the rate at the Gateway instead"
    routing = spec.routing
    if routing is not None and routing.sticky_by is not None:
        yield (
            "spec.routing.stickyBy",
            f"{GATEWAY_REFUSES}: an HTTPRoute splits by weight only and cannot hash a key",
        )
    if spec.rollout is not None:
        yield (
            "spec.rollout",
            f"{GATEWAY_REFUSES}: the gates read the nginx router's per-version metrics",
        )
    collection = spec.data_collection
    if spec.shadows() and collection is not None and collection.enabled:
        i = next(i for i, v in enumerate(spec.versions) if v.shadow is not None)
        yield (
            f"spec.versions[{i}].shadow",
            f"{GATEWAY_REFUSES} with dataCollection enabled: the Gateway mirrors without "
            "handing back the shadow's answer, so production and shadow answers cannot be "
            "paired",
        )


def realtime_catalog_rules(spec: RealTimeServiceSpec, catalog: Catalog) -> Iterator[Finding]:
    if catalog.router.mode == "gateway-api":
        yield from _gateway_rules(spec)
    if spec.rollout is not None and spec.rollout.gates.queries and catalog.prometheus is None:
        yield (
            "spec.rollout.gates.queries",
            "the operator's catalog names no Prometheus (prometheus.url) to query",
        )
    pools: list[str] = []
    yield from _usable_pools(spec, catalog, pools)
    for i, version in enumerate(spec.versions):
        path = f"spec.versions[{i}].specification"
        flavor, problem = _flavor(catalog, version.specification, path)
        if problem is not None:
            yield problem
            continue
        assert flavor is not None
        for name in pools:
            if name not in flavor.pools:
                yield (
                    path,
                    f"flavor {flavor.name!r} is not offered in pool {name!r} "
                    f"(offered in: {', '.join(flavor.pools)})",
                )
        if flavor.free and len(spec.versions) > 1:
            yield (
                path,
                f"free flavor {flavor.name!r} allows a single version; this service "
                f"has {len(spec.versions)}",
            )


def batch_catalog_rules(spec: BatchServiceSpec, catalog: Catalog) -> Iterator[Finding]:
    path = "spec.specification"
    flavor, problem = _flavor(catalog, spec.specification, path)
    if problem is not None:
        yield problem
        return
    assert flavor is not None
    public = catalog.public_pool()
    if public is None:
        yield path, "batch services run in the public pool, and the catalog has none"
    elif public.name not in flavor.pools:
        yield (
            path,
            f"batch services run in the public pool only; flavor {flavor.name!r} "
            f"is not offered there (offered in: {', '.join(flavor.pools)})",
        )
