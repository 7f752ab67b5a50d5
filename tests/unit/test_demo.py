"""`inferops demo`: its examples are package data equal to examples/, its versions come from
the operator's desired state, and the tour runs."""

from __future__ import annotations

import contextlib
import fnmatch
import tomllib
from pathlib import Path

import pytest

import inferops
from inferops.demo import examples_dir, run_demo
from inferops.demo.realtime import read_examples
from inferops.demo.shipped import SHIPPED
from inferops.demo.state import Demo
from inferops.resources.naming import child_name

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(inferops.__file__).resolve().parent


def _files(root: Path) -> set[Path]:
    return {
        p.relative_to(root) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.parametrize("relative", SHIPPED, ids=str)
def test_shipped_examples_equal_the_repository_examples(relative: Path) -> None:
    assert (examples_dir() / relative).read_bytes() == (REPO / "examples" / relative).read_bytes()


def test_the_demo_reads_its_examples_from_the_package() -> None:
    root = examples_dir()
    assert root.resolve() == PACKAGE / "demo" / "examples"
    assert _files(root) == set(SHIPPED)


def test_package_data_declares_every_shipped_file() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["inferops"]
    for relative in SHIPPED:
        path = str(Path("demo") / "examples" / relative)
        assert any(fnmatch.fnmatch(path, p) for p in patterns), path


def test_versions_come_from_the_desired_state(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        demo = Demo(examples_dir(), tmp_path, stack)
        read_examples(demo)
    assert demo.service == "iris-online"
    # The upstreams are the version Services the operator names.
    assert [(v.label, v.ratio, v.upstream) for v in demo.versions] == [
        ("iris 1.0.0", 70, child_name("iris-online", "iris", "1.0.0")),
        ("iris 2.0.0", 30, child_name("iris-online", "iris", "2.0.0")),
    ]
    # The model container's env: the app version's defaults (2.0.0 sets the revision).
    assert demo.versions[0].env == {}
    assert demo.versions[1].env == {"IRIS_MODEL_REVISION": "2"}


def test_the_tour_runs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_demo(tmp_path) == 0
    out = capsys.readouterr().out
    assert "the operator would apply: Deployment x3, Service x3, ConfigMap x1" in out
    assert "infer-result-demo.manifest" in out and out.rstrip().endswith("Done.")
