"""The batch seed's example, end to end through the real worker and real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from inferops.cli import main
from inferops.contract.batch_worker import config_from_service
from inferops.contract.request_schema import generate_mapping
from inferops.runtime.model_server import build_app
from inferops.worker.runner import run_local, run_worker
from tests.worker_support import (
    IRIS_MODEL,
    SEED_SCHEMA,
    Recording,
    application,
    batch_service,
    read_lines,
    recording_model,
    serve,
)

# The seed's "Example Mapping", verbatim.
SEED_MAPPING = json.loads("""
{"type": "object", "properties": {"data": {"type": "object", "properties": {"req_data": {
 "type": "array", "items": [{"type": "object", "properties": {
   "input_1": {"type": "number", "index": 0}, "input_2": {"type": "number", "index": 1},
   "input_3": {"type": "number", "index": 2}, "input_4": {"type": "number", "index": 3}}}]}}}}}
""")
SEED_CSV = "5.1,3.5,1.4,0.2\n4.9,3.0,1.4,0.2\n4.7,3.2,1.3,0.2\n"
SEED_BODY_1 = """{
    "data": {
        "req_data": [{
            "input_1": 5.1,
            "input_2": 3.5,
            "input_3": 1.4,
            "input_4": 0.2
        }]
    }
}"""


def expected_bodies() -> list[dict[str, object]]:
    rows = [line.split(",") for line in SEED_CSV.split()]
    return [
        {"data": {"req_data": [{f"input_{i + 1}": float(v) for i, v in enumerate(row)}]}}
        for row in rows
    ]


def test_seed_example_exactly(tmp_path: Path) -> None:
    # The seed's config.json says multipart/form-data, yet no property is a file: JSON input.
    app = application(SEED_SCHEMA)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "data.csv").write_text(SEED_CSV)
    service = batch_service(str(tmp_path / "in"), str(tmp_path / "out"))
    recording = Recording()
    with serve(recording_model(recording)) as url:
        config = config_from_service(service, app, url, "seed", allow_local_paths=True)
        assert config.input_type == "json"
        assert config.mapping == SEED_MAPPING == generate_mapping(SEED_SCHEMA)
        summary = asyncio.run(run_worker(config))

    assert recording.bodies() == expected_bodies()
    assert recording.bodies()[0] == json.loads(SEED_BODY_1)
    assert {kind for kind, _ in recording.requests} == {"application/json"}
    manifest = tmp_path / "out" / "infer-result-seed.manifest"
    result = tmp_path / "out" / "infer-result-seed" / "data.csv_result.txt"
    lines = manifest.read_text().splitlines()
    assert [list(json.loads(line)) for line in lines] == [["source", "result", "inference-loc"]]
    assert json.loads(lines[0]) == {
        "source": str(tmp_path / "in" / "data.csv"),
        "result": "SUCCESSFUL",
        "inference-loc": str(result),
    }
    # One JSON line per row, in row order (the model pretty-prints; the file does not).
    assert read_lines(result) == [{"echo": body} for body in expected_bodies()]
    assert summary.to_dict() == {
        "total": 1,
        "succeeded": 1,
        "failed": 0,
        "manifests": [str(manifest)],
    }


def test_seed_example_against_the_iris_model(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "data.csv").write_text(SEED_CSV)
    out = f"file://{tmp_path}/out"
    service = batch_service(f"file://{tmp_path}/in/", out, app="iris", mapping=SEED_MAPPING)
    with serve(build_app(IRIS_MODEL)) as url:
        [summary] = run_local(service, application(SEED_SCHEMA, name="iris"), url, "iris1")
    assert (summary.total, summary.succeeded) == (1, 1)
    [line] = read_lines(tmp_path / "out" / "infer-result-iris1.manifest")
    # Paths keep the scheme style they were given in.
    assert line["source"] == f"file://{tmp_path}/in/data.csv"
    assert line["inference-loc"] == f"{out}/infer-result-iris1/data.csv_result.txt"
    results = read_lines(tmp_path / "out" / "infer-result-iris1" / "data.csv_result.txt")
    assert [r["resp_data"][0]["predictresult"] for r in results] == ["setosa"] * 3


def test_batch_run_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "data.csv").write_text(SEED_CSV)
    service = batch_service(str(tmp_path / "in"), str(tmp_path / "out"), app="iris", computeNodes=2)
    (tmp_path / "bs.yaml").write_text(yaml.safe_dump(service))
    app_file = str(IRIS_MODEL.parents[1] / "iris-application.yaml")
    with serve(build_app(IRIS_MODEL)) as url:
        code = main(
            [
                "batch",
                "run",
                "-f",
                str(tmp_path / "bs.yaml"),
                "--app",
                app_file,
                "--model-url",
                url,
                "--task-id",
                "cli",
            ]
        )
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    manifest = str(tmp_path / "out" / "infer-result-cli.manifest")
    assert out[0] == manifest
    assert json.loads(out[-1]) == {
        "task_id": "cli",
        "total": 1,
        "succeeded": 1,
        "failed": 0,
        "manifests": [manifest],
    }
    assert (
        main(
            [
                "batch",
                "run",
                "-f",
                str(tmp_path / "none.yaml"),
                "--app",
                app_file,
                "--model-url",
                "http://127.0.0.1:1",
            ]
        )
        == 2
    )
    assert "none.yaml: cannot read" in capsys.readouterr().err
