"""The BatchService step: the folder example over the seed's CSV rows, with the real worker."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from inferops.demo.errors import DemoError
from inferops.demo.shipped import BATCH_DATA, BATCH_FILE
from inferops.demo.state import INDENT, Demo
from inferops.manifests import ManifestError, read_documents
from inferops.worker.runner import run_local


def run_batch(demo: Demo) -> None:
    """The folder BatchService example over the seed's three CSV rows, into local folders."""
    batch_dir = demo.work_dir / "batch"
    source = demo.examples / BATCH_DATA
    input_dir = batch_dir / "input"
    input_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, input_dir / source.name)
    try:
        documents = read_documents([str(demo.examples / BATCH_FILE)])
    except ManifestError as exc:
        raise DemoError(str(exc)) from None
    service = documents[0].obj
    spec = dict(service["spec"])
    spec.update(inputPath=str(input_dir) + "/", outputPath=str(batch_dir / "output") + "/")
    spec.pop("storage", None)
    service = {**service, "spec": spec}
    app = demo.applications[spec["application"]]
    server = next(v for v in demo.versions if v.version == spec["version"])
    summaries = run_local(service, app, f"http://{server.address}", "demo", 1)
    print(
        f"{INDENT}BatchService {service['metadata']['name']}: {source.name} "
        f"({source.read_text().count(chr(10))} rows) -> {batch_dir / 'output'}"
    )
    for summary in summaries:
        for manifest in summary.manifests:
            path = Path(manifest.removeprefix("file://"))
            print(f"{INDENT}{path.name}:")
            for line in path.read_text(encoding="utf-8").splitlines():
                print(f"{INDENT}  {line}")
            for record in (json.loads(x) for x in path.read_text().splitlines()):
                if record.get("result") == "SUCCESSFUL":
                    result = Path(record["inference-loc"].removeprefix("file://"))
                    print(f"{INDENT}{result.name}:")
                    for row in result.read_text(encoding="utf-8").splitlines():
                        print(f"{INDENT}  {row}")
