"""The `inferops` command: validate, mapping and crds as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from inferops.cli import main
from tests.unit.rules_table import APPS, ROWS, rts, version

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(str(p) for p in (REPO / "examples").glob("*.yaml"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, *docs: object) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def test_examples_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(EXAMPLES) >= 5
    assert run(capsys, "validate", *EXAMPLES) == (0, "", "")


def test_invalid_rows_print_one_line_per_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    invalid = [r for r in ROWS if r.expected and r.old is None]
    # Application rows go in a run of their own: they reuse the names of the APPS.
    services = [r for r in invalid if r.obj["kind"] != "AIApplication"]
    files = [write(tmp_path, f"{i}.yaml", r.obj) for i, r in enumerate(services)]
    code, out, err = run(capsys, "validate", write(tmp_path, "apps.yaml", *APPS), *files)
    assert code == 1 and err == ""
    apps = [
        write(tmp_path, f"app{i}.yaml", r.obj)
        for i, r in enumerate(invalid)
        if r.obj["kind"] == "AIApplication"
    ]
    code, app_out, err = run(capsys, "validate", *apps)
    assert code == 1 and err == ""
    lines = out.splitlines() + app_out.splitlines()
    for row in invalid:
        kind, name = row.obj["kind"], row.obj["metadata"]["name"]
        for path, fragment in row.expected:
            assert any(
                line.startswith(f"{kind}/{name}: {path}: ") and fragment in line for line in lines
            ), (row.id, path)
    assert all(line.count(": ") >= 2 for line in lines)


def test_reference_rules_need_the_application_among_the_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    service = write(tmp_path, "svc.yaml", rts())
    # Without the app: nothing to cross-check, so only self-contained rules apply.
    assert run(capsys, "validate", service)[0] == 0
    code, out, _ = run(capsys, "validate", write(tmp_path, "app.yaml", APPS[1]), service)
    assert code == 1 and "application 'iris' not found in namespace 'default'" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a: [", "invalid YAML"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", "unknown kind 'Pod'"),
        ("- 1\n- 2\n", "is not a Kubernetes object"),
    ],
)
def test_unreadable_input_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    code, out, err = run(capsys, "validate", str(path))
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


HEADER = "apiVersion: serving.inferops.dev/v1alpha1\nkind: RealTimeService\nmetadata: {name: x}\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (HEADER + "spec: " + "[" * 10_000 + "]" * 10_000, "line 4: invalid YAML: nested deeper"),
        (HEADER + "spec:\n  versions:\n  - trafficRatio: " + "9" * 5000, "more than 256 digits"),
        ("kind: [RealTimeService]\nmetadata: {name: x}\n", "document 1: unknown kind ['Real"),
        ("kind: {a: b}\n", "document 1: unknown kind {'a': 'b'}"),
        (HEADER + "spec: &a [*a]\n", "line 4: invalid YAML: an alias refers to a node"),
        (HEADER + "spec: {description: 2001-02-30}\n", "'2001-02-30' is not a valid timestamp"),
        ("a: 1\n---\n" + "- " * 5000 + "x\n", "line 3: invalid YAML: nested deeper"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "render"])
def test_hostile_yaml_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, content: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    code, out, err = run(capsys, command, str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"inferops: {path}: ") and message in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["validate", "render"])
def test_a_line_break_in_a_key_or_name_cannot_split_a_problem_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(HEADER.replace("name: x", 'name: "a\\nb"') + 'spec: {"\\r": 1, "x\\ny": 2}\n')
    code, out, err = run(capsys, command, str(path))
    lines = (out if command == "validate" else err).splitlines()
    assert code == 1 and lines
    assert all(line.startswith("RealTimeService/a\\nb: ") for line in lines)
    assert "RealTimeService/a\\nb: spec.\\r: unknown field" in lines


def test_input_is_read_up_to_a_bound(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "validate", "/dev/zero")
    assert code == 2 and "/dev/zero: invalid YAML: larger than 16777216 bytes" in err


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "validate", "/nonexistent/x.yaml")
    assert code == 2 and "cannot read" in err


def test_custom_catalog(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {
                "pools": [{"name": "public", "type": "public"}],
                "flavors": [{"name": "tiny", "cpu": "1", "memory": "1Gi", "pools": ["public"]}],
            }
        )
    )
    service = write(tmp_path, "svc.yaml", rts())
    code, out, _ = run(capsys, "validate", "--catalog", str(catalog), service)
    assert code == 1 and "unknown flavor 'cpu.2u4g'; the catalog offers: tiny" in out
    catalog.write_text("pools: []\nflavors: []\n")
    code, _, err = run(capsys, "validate", "--catalog", str(catalog), service)
    assert code == 2 and "catalog" in err


def test_mapping_command_prints_the_seed_mapping(capsys: pytest.CaptureFixture[str]) -> None:
    data = Path(__file__).parent / "data"
    code, out, _ = run(capsys, "mapping", str(data / "seed_config.json"))
    assert code == 0
    assert json.loads(out) == json.loads((data / "seed_mapping.json").read_text())


def test_mapping_command_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"apis": [{"method": "post", "url": "/a"}]}))
    assert run(capsys, "mapping", str(config), "--api", "/b")[0] == 1
    config.write_text("{")
    assert run(capsys, "mapping", str(config))[0] == 2
    assert run(capsys, "mapping", str(tmp_path / "missing.json"))[0] == 2


def test_crds_command_prints_and_writes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "crds")
    assert code == 0 and len(list(yaml.safe_load_all(out))) == 3
    code, out, _ = run(capsys, "crds", "--output-dir", str(tmp_path))
    assert code == 0 and len(out.splitlines()) == 3
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in (REPO / "crds").iterdir()}


def test_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "inferops.cli", "validate", *EXAMPLES],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_render_prints_the_children_of_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "render",
        str(REPO / "examples" / "iris-application.yaml"),
        str(REPO / "examples" / "iris-realtime.yaml"),
    )
    assert (code, err) == (0, "")
    children = list(yaml.safe_load_all(out))
    kinds = [c["kind"] for c in children]
    assert kinds == [
        "Deployment",
        "Service",
        "Deployment",
        "Service",
        "ConfigMap",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "NetworkPolicy",
    ]
    assert all("ownerReferences" not in c["metadata"] for c in children)
    assert "70% iris-online-iris-1-0-0-" in children[4]["data"]["nginx.conf"]


def test_render_refuses_invalid_services(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = write(tmp_path, "bad.yaml", APPS[0], rts(version("1.0.0", 99)))
    code, out, err = run(capsys, "render", bad)
    assert code == 1 and out == ""
    assert "traffic ratios must sum to exactly 100, got 99" in err
