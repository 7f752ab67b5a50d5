"""The generated CRDs: in sync with the models, structural, and valid for Kubernetes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from inferops.api.crd import all_crds, render_yaml, write_crds
from inferops.api.kinds import ALL_KINDS
from inferops.api.names import CATEGORY, GROUP

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
K8S_VERSION = "1.37.0"


def test_committed_crds_match_the_generator() -> None:
    generated = {name: render_yaml(crd) for name, crd in all_crds().items()}
    committed = {p.name: p.read_text(encoding="utf-8") for p in CRD_DIR.glob("*.yaml")}
    assert committed == generated, "crds/ is stale: run `inferops crds --output-dir crds`"


def test_generation_is_idempotent(tmp_path: Path) -> None:
    first = {p.name: p.read_text() for p in write_crds(tmp_path / "a")}
    second = {p.name: p.read_text() for p in write_crds(tmp_path / "a")}
    assert first == second


@pytest.mark.parametrize("name", sorted(all_crds()))
def test_valid_against_kubernetes_crd_schema(name: str) -> None:
    kubernetes_validate.validate(all_crds()[name], K8S_VERSION, strict=True)


def _walk(node: dict[str, Any], path: str) -> list[str]:
    """Structural-schema violations (apiextensions' rules) under one node."""
    problems = []
    if "$ref" in node or "anyOf" in node or "oneOf" in node or "allOf" in node:
        problems.append(f"{path}: $ref or a combinator")
    if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path}: no type")
    if node.get("additionalProperties") is False or "title" in node:
        problems.append(f"{path}: additionalProperties false or title")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: both properties and additionalProperties")
    for key, child in node.get("properties", {}).items():
        problems += _walk(child, f"{path}.{key}")
    if "items" in node:
        problems += _walk(node["items"], f"{path}[]")
    if "type" in node and node["type"] != "string" and "pattern" in node:
        problems.append(f"{path}: pattern on a non-string")
    return problems


@pytest.mark.parametrize("name", sorted(all_crds()))
def test_schema_is_structural_and_described(name: str) -> None:
    crd = all_crds()[name]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _walk(schema, "") == []
    undocumented = [p for p in _leaf_paths(schema["properties"]["spec"], "spec") if not p[1]]
    assert undocumented == [], "every spec field needs a description for kubectl explain"


def _leaf_paths(node: dict[str, Any], path: str) -> list[tuple[str, bool]]:
    # Scalar list items are described by their list.
    scalar_item = path.endswith("[]") and node.get("type") != "object"
    out = [] if scalar_item else [(path, bool(node.get("description")))]
    for key, child in node.get("properties", {}).items():
        out += _leaf_paths(child, f"{path}.{key}")
    if "items" in node:
        out += _leaf_paths(node["items"], f"{path}[]")
    return out


def test_names_categories_columns_and_status() -> None:
    crds = {c["spec"]["names"]["kind"]: c for c in all_crds().values()}
    assert set(crds) == set(ALL_KINDS)
    shorts = {k: c["spec"]["names"]["shortNames"] for k, c in crds.items()}
    assert shorts == {
        "AIApplication": ["aiapp"],
        "RealTimeService": ["rts"],
        "BatchService": ["bs"],
    }
    for crd in crds.values():
        assert crd["spec"]["group"] == GROUP
        assert crd["spec"]["scope"] == "Namespaced"
        assert crd["spec"]["names"]["categories"] == [CATEGORY]
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
        assert columns[-1] == "Age"  # of the default columns; -o wide adds more
    rts_columns = [
        c["name"]
        for c in crds["RealTimeService"]["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    assert rts_columns == [
        "Phase",
        "Reason",
        "Traffic",
        "Rollout",
        "Ready",
        "URL",
        "Age",
        "Message",
    ]
    bs_columns = [
        c["name"] for c in crds["BatchService"]["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    assert bs_columns[:3] == ["Phase", "Reason", "Progress"]


def _spec(kind: str) -> dict[str, Any]:
    crd = next(c for c in all_crds().values() if c["spec"]["names"]["kind"] == kind)
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]  # type: ignore[no-any-return]


def test_defaults_bounds_and_enums_from_the_seeds() -> None:
    rts = _spec("RealTimeService")
    item = rts["properties"]["versions"]["items"]["properties"]
    assert item["timeoutMinutes"] == {
        **item["timeoutMinutes"],
        "default": 20,
        "minimum": 3,
        "maximum": 120,
    }
    assert item["trafficRatio"]["minimum"] == 0 and item["trafficRatio"]["maximum"] == 100
    assert rts["properties"]["resourcePool"]["default"] == "public"
    assert rts["properties"]["websocket"]["default"] is False
    rules = [r["rule"] for r in rts["x-kubernetes-validations"]]
    assert any("sum() == 100" in r for r in rules)
    assert (
        rts["properties"]["websocket"]["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"
    )
    app = _spec("AIApplication")["properties"]["versions"]["items"]["properties"]
    assert app["port"]["default"] == 8080
    assert app["health"]["default"] == {}
    assert app["health"]["properties"]["path"]["default"] == "/health"
    batch = _spec("BatchService")["properties"]
    assert batch["timeoutMinutes"]["default"] == 20
    assert batch["mapping"]["x-kubernetes-preserve-unknown-fields"] is True


def test_crds_parse_as_yaml_documents() -> None:
    for path in CRD_DIR.glob("*.yaml"):
        docs = list(yaml.safe_load_all(path.read_text()))
        assert len(docs) == 1 and docs[0]["kind"] == "CustomResourceDefinition"
