"""`inferops render | kubectl apply --dry-run=server -f -`: the API server takes every child
exactly as render printed it.

The inputs are chosen so that the output is full of strings a YAML 1.2 reader (kubectl's
go-yaml) takes for numbers unless they are quoted: app versions `1e3`, `0o17` and `y`
become label values, and the service's name is picked so that the router's config hash
(`serving.inferops.dev/config-hash`, 16 hex digits) is such a string too, like
`79958112164791e7`, which PyYAML on its own would write plain.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from k8s_helpers import Kubectl

from inferops.api.catalog import default_catalog
from inferops.manifests import Document
from inferops.render import render
from inferops.resources.realtime import CONFIG_HASH
from tests.unit.rules_table import app, bs, rts, version

VERSIONS = ("1e3", "0o17", "y")
# Plain scalars a YAML 1.2 core-schema reader resolves to an int or a float.
YAML12_NUMBER = re.compile(
    r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+|[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
)


def _pyyaml_writes_plain(text: str) -> bool:
    return not yaml.safe_dump(text).startswith(("'", '"'))


def _retyped_unless_quoted(text: str) -> bool:
    return _pyyaml_writes_plain(text) and bool(YAML12_NUMBER.fullmatch(text))


def _in(namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}


def _config_hash(children: list[dict[str, Any]]) -> str:
    router = next(
        c
        for c in children
        if c["kind"] == "Deployment" and c["metadata"]["name"].endswith("-router")
    )
    return str(router["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH])


def _service_with_a_numeric_hash(namespace: str, application: dict[str, Any]) -> dict[str, Any]:
    """A RealTimeService over VERSIONS whose router config hash reads as a number."""
    catalog = default_catalog()
    versions = [version(v, r) for v, r in zip(VERSIONS, (50, 30, 20), strict=True)]
    for i in range(50_000):  # about one name in 1,300 qualifies
        service = _in(namespace, rts(*versions, name=f"digits-{i}"))
        docs = [Document("app", 0, application), Document("svc", 0, service)]
        children, problems = render(docs, catalog)
        assert problems == []
        if _retyped_unless_quoted(_config_hash(children)):
            return service
    raise AssertionError("no service name gives a config hash that reads as a number")


def _subset(rendered: Any, served: Any, path: str = "") -> list[str]:
    """Where the server's object differs from what render printed (server defaults aside)."""
    if served is None and rendered in (0, False, "", [], {}):
        return []  # the API omits zero values (omitempty): `initialDelaySeconds: 0`, `env: []`
    if isinstance(rendered, dict):
        if not isinstance(served, dict):
            return [f"{path}: {served!r} is not a mapping"]
        return [d for k, v in rendered.items() for d in _subset(v, served.get(k), f"{path}.{k}")]
    if isinstance(rendered, list):
        if not isinstance(served, list) or len(served) != len(rendered):
            return [f"{path}: {served!r} is not a list of {len(rendered)}"]
        return [d for i, v in enumerate(rendered) for d in _subset(v, served[i], f"{path}[{i}]")]
    return [] if rendered == served else [f"{path}: rendered {rendered!r}, served {served!r}"]


def test_render_output_applies_as_printed(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    application = _in(namespace, app("iris", VERSIONS))
    service = _service_with_a_numeric_hash(namespace, application)
    batch = _in(
        namespace,
        bs(
            "digits-batch",
            version="1e3",
            computeNodes=2,
            storage={"endpoint": "http://s3.example:9000"},
        ),
    )
    files = []
    for name, obj in (("app", application), ("svc", service), ("batch", batch)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(obj))
        files.append(str(path))

    result = subprocess.run(
        [sys.executable, "-m", "inferops.cli", "render", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    printed = list(yaml.safe_load_all(result.stdout))
    assert [c["kind"] for c in printed] == [
        "Deployment",
        "Service",
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
    ]
    digest = _config_hash(printed)
    assert _retyped_unless_quoted(digest) and f"{CONFIG_HASH}: '{digest}'" in result.stdout
    assert all(f"serving.inferops.dev/version: '{v}'" in result.stdout for v in VERSIONS)

    out = kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=result.stdout)
    listed = json.loads(out)
    served = {
        (o["kind"], o["metadata"]["name"]): o
        for o in (listed["items"] if listed.get("kind") == "List" else [listed])
    }
    assert set(served) == {(c["kind"], c["metadata"]["name"]) for c in printed}
    for child in printed:
        seen = served[(child["kind"], child["metadata"]["name"])]
        assert _subset(child, seen) == [], (child["metadata"]["name"], _subset(child, seen))
        assert seen["metadata"]["labels"] == child["metadata"]["labels"]
    router = served[("Deployment", f"{service['metadata']['name']}-router")]
    assert router["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH] == digest
    # A dry run: nothing was created.
    assert (
        kubectl(
            "get",
            "deployments,services,configmaps,jobs",
            "-n",
            namespace,
            "-l",
            "app.kubernetes.io/managed-by=inferops",
            "-o",
            "name",
        )
        == ""
    )
