"""The catalog: the built-in default of docs/design.md, and the catalog file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inferops.api.catalog import CatalogError, default_catalog, load_catalog

DESIGN_EXAMPLE = """
pools:
- {name: public, type: public}
- {name: pool-a, type: dedicated, nodeSelector: {serving.inferops.dev/pool: pool-a}, tolerations: []}
- {name: pool-b, type: dedicated, nodeSelector: {serving.inferops.dev/pool: pool-b}}
flavors:
- {name: cpu.2u4g, cpu: "2", memory: 4Gi, pools: [public, pool-a, pool-b]}
- {name: free.1u2g, cpu: "1", memory: 2Gi, free: true, pools: [public]}
- {name: gpu.1x, cpu: "8", memory: 32Gi, gpu: 1, gpuResource: nvidia.com/gpu, pools: [pool-a, pool-b]}
quotas:
  realTimeServicesPerNamespace: 20
  batchServicesPerNamespace: 1000
  publicPoolInstancesPerNamespace: null
router: {mode: nginx}
batch: {maxImageBytes: 10485760, maxCsvBytes: 12582912, manifestMaxLines: 10000}
"""


def test_default_catalog_is_the_one_in_design() -> None:
    catalog = default_catalog()
    assert [(p.name, p.type) for p in catalog.pools] == [
        ("public", "public"),
        ("pool-a", "dedicated"),
        ("pool-b", "dedicated"),
    ]
    assert catalog.pool("pool-a").node_selector == {"serving.inferops.dev/pool": "pool-a"}  # type: ignore[union-attr]
    flavors = {f.name: f for f in catalog.flavors}
    assert set(flavors) == {"cpu.2u4g", "cpu.4u8g", "free.1u2g", "gpu.1x"}
    assert flavors["free.1u2g"].free and flavors["free.1u2g"].pools == ["public"]
    assert flavors["gpu.1x"].gpu == 1 and flavors["gpu.1x"].gpu_resource == "nvidia.com/gpu"
    assert "public" not in flavors["gpu.1x"].pools
    assert catalog.quotas.real_time_services_per_namespace == 20
    assert catalog.quotas.batch_services_per_namespace == 1000
    assert catalog.quotas.public_pool_instances_per_namespace is None
    assert catalog.batch.max_image_bytes == 10 * 1024 * 1024
    assert catalog.batch.max_csv_bytes == 12 * 1024 * 1024
    assert catalog.router.mode == "nginx"


def test_design_example_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(DESIGN_EXAMPLE)
    catalog = load_catalog(path)
    assert catalog.flavor("gpu.1x").gpu == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {
                "pools": [{"name": "p", "type": "public"}, {"name": "p", "type": "dedicated"}],
                "flavors": [{"name": "f", "cpu": "1", "memory": "1Gi", "pools": ["p"]}],
            },
            "unique",
        ),
        (
            {
                "pools": [{"name": "p", "type": "public"}],
                "flavors": [{"name": "f", "cpu": "1", "memory": "1Gi", "pools": ["q"]}],
            },
            "unknown pools",
        ),
        (
            {
                "pools": [{"name": "p", "type": "public"}],
                "flavors": [{"name": "f", "cpu": "1", "memory": "1Gi", "pools": ["p"]}],
                "router": {"mode": "gateway-api"},
            },
            "router.gateway is required",
        ),
        (
            {
                "pools": [{"name": "p", "type": "public"}],
                "flavors": [{"name": "f", "cpu": "1", "memory": "1Gi", "pools": ["p"]}],
                "router": {
                    "mode": "gateway-api",
                    "gateway": {"name": "gw", "url": "models.example.com"},
                },
            },
            "router.gateway.url",
        ),
        ([1, 2], "mapping"),
    ],
)
def test_bad_catalogs_are_refused(tmp_path: Path, data: object, message: str) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError, match=message):
        load_catalog(path)


def test_missing_catalog_file() -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog("/nonexistent/catalog.yaml")


def test_kind_config_has_a_worker_per_dedicated_pool() -> None:
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster"
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker", "worker"]
    labels = [n.get("labels", {}) for n in config["nodes"] if n["role"] == "worker"]
    dedicated = [p.node_selector for p in default_catalog().pools if p.type == "dedicated"]
    assert labels == dedicated


@pytest.mark.parametrize(
    "text",
    ["a: " + "[" * 5000 + "]" * 5000, "a: " + "9" * 5000, "pools: &a [*a]"],
    ids=["deep", "digits", "alias"],
)
def test_a_hostile_catalog_file_is_one_catalog_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError, match="catalog"):
        load_catalog(path)
