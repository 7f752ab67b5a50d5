"""The chart's CRDs and catalog schema stay in step with crds/ and the catalog model."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.unit.test_chart import by_kind, render

REPO = Path(__file__).resolve().parents[2]
SYNC = REPO / "charts" / "sync.py"
HELM_METADATA = (
    "helm.sh/",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)


def load_sync() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_sync", SYNC)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def without_helm_metadata(crd: dict[str, Any]) -> dict[str, Any]:
    meta = dict(crd["metadata"])
    meta["labels"] = {k: v for k, v in meta["labels"].items() if not k.startswith(HELM_METADATA)}
    meta.pop("annotations", None)
    return {**crd, "metadata": meta}


def test_chart_is_in_sync_with_crds_and_the_catalog_model() -> None:
    result = subprocess.run(
        [sys.executable, str(SYNC), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rendered_crds_are_the_generated_ones() -> None:
    rendered = {c["metadata"]["name"]: c for c in by_kind(render(), "CustomResourceDefinition")}
    generated = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml"))]
    assert sorted(rendered) == sorted(c["metadata"]["name"] for c in generated)
    for crd in generated:
        assert without_helm_metadata(rendered[crd["metadata"]["name"]]) == crd
        labels = rendered[crd["metadata"]["name"]]["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        annotations = rendered[crd["metadata"]["name"]]["metadata"]["annotations"]
        assert annotations == {"helm.sh/resource-policy": "keep"}


def test_crds_can_be_left_out_or_not_kept() -> None:
    assert by_kind(render({"crds": {"install": False}}), "CustomResourceDefinition") == []
    for crd in by_kind(render({"crds": {"keep": False}}), "CustomResourceDefinition"):
        assert "annotations" not in crd["metadata"]


@pytest.fixture
def sync_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """charts/sync.py working on a copy of the chart."""
    sync = load_sync()
    chart = tmp_path / "inferops"
    shutil.copytree(sync.CHART, chart)
    monkeypatch.setattr(sync, "CHART", chart)
    monkeypatch.setattr(sync, "CHART_CRDS", chart / "templates" / "crds")
    monkeypatch.setattr(sync, "SCHEMA", chart / "values.schema.json")
    monkeypatch.setattr(sync, "REPO", tmp_path)
    return sync


def test_check_fails_on_drift_and_sync_repairs_it(
    sync_copy: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    template = sync_copy.CHART_CRDS / "serving.inferops.dev_realtimeservices.yaml"
    template.write_text(template.read_text().replace("maximum: 120", "maximum: 240"))
    (sync_copy.CHART_CRDS / "old.yaml").write_text("kind: Old\n")
    schema = sync_copy.SCHEMA
    schema.write_text(schema.read_text().replace('"realTimeServicesPerNamespace"', '"rtsMax"'))
    assert sync_copy.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "serving.inferops.dev_realtimeservices.yaml is out of date" in out
    assert "old.yaml is out of date" in out and "values.schema.json is out of date" in out
    assert sync_copy.main([]) == 0
    assert sync_copy.main(["--check"]) == 0
    assert not (sync_copy.CHART_CRDS / "old.yaml").exists()


def test_a_crd_with_template_braces_is_refused(tmp_path: Path) -> None:
    sync = load_sync()
    source = tmp_path / "x.yaml"
    source.write_text("apiVersion: v1\nkind: X\nmetadata:\n  name: x\nspec:\n  a: '{{ b }}'\n")
    with pytest.raises(SystemExit, match="template"):
        sync.crd_template(source)
