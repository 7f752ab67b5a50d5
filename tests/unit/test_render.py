"""`inferops render`: the children reconcile applies (desired_state), as YAML kubectl reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferops.api.catalog import default_catalog
from inferops.cli import main
from inferops.manifests import read_documents
from inferops.render import PLACEHOLDER_UID, render, render_text
from inferops.resources.batch import task_id
from inferops.resources.desired import desired_state, parse_service
from inferops.validation.references import index_applications, version_specs

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
FILES = [
    str(EXAMPLES / n)
    for n in (
        "iris-application.yaml",
        "iris-realtime.yaml",
        "iris-batch-folder.yaml",
        "image-stats-application.yaml",
        "image-stats-batch.yaml",
    )
]


def _expected(files: list[str]) -> list[dict[str, Any]]:
    """What reconcile would apply for every service in the files, owner references aside."""
    documents = read_documents(files)
    apps = index_applications(d.obj for d in documents)
    children = []
    for doc in documents:
        if doc.obj["kind"] in ("RealTimeService", "BatchService"):
            obj = {
                **doc.obj,
                "metadata": {**doc.obj["metadata"], "namespace": "default", "uid": PLACEHOLDER_UID},
            }
            for child in desired_state(
                parse_service(obj, version_specs(apps, "default")), default_catalog()
            ):
                child["metadata"].pop("ownerReferences")
                children.append(child)
    return children


def test_render_is_the_desired_state_of_every_service() -> None:
    children, problems = render(read_documents(FILES), default_catalog())
    assert problems == []
    assert children == _expected(FILES)
    assert [c["kind"] for c in children] == [
        "Deployment",
        "Service",
        "Deployment",
        "Service",
        "ConfigMap",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "NetworkPolicy",
        "Job",
        "NetworkPolicy",
        "Job",
        "NetworkPolicy",
    ]


def test_batch_services_get_their_job_with_the_placeholder_task_id() -> None:
    children, _ = render(read_documents(FILES[:1] + FILES[2:3]), default_catalog())
    job, policy = children
    assert policy["kind"] == "NetworkPolicy" and policy["spec"]["ingress"] == []
    assert job["kind"] == "Job" and job["metadata"]["name"] == "iris-batch-folder"
    assert "ownerReferences" not in job["metadata"]
    worker = job["spec"]["template"]["spec"]["containers"][0]
    config = json.loads(
        next(e["value"] for e in worker["env"] if e["name"] == "INFEROPS_BATCH_CONFIG")
    )
    assert config["task_id"] == task_id({"metadata": {"uid": PLACEHOLDER_UID}}) == "0" * 12


def test_render_text_has_no_aliases_and_round_trips() -> None:
    children, _ = render(read_documents(FILES), default_catalog())
    text = render_text(children)
    assert "&id" not in text and "*id" not in text
    assert list(yaml.safe_load_all(text)) == children


def test_cli_render_prints_plain_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", *FILES]) == 0
    out, err = capsys.readouterr()
    children, _ = render(read_documents(FILES), default_catalog())
    assert (out, err) == (render_text(children), "")
    # Labels shared by metadata, selector and template are written out each time.
    assert "&" not in out and "*" not in out
