"""The generated CRDs on a real kube-apiserver: schema, CEL, defaults, status, columns.

The validation table of tests/unit is replayed against the API server: every row the CRD
can refuse must be refused with the expected field path (and, for CEL rules, the same
message as the Python validation); every other row must be accepted.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_helpers import Kubectl, printed
from kubernetes import client
from kubernetes.client.rest import ApiException

from inferops.api.kinds import ALL_KINDS
from inferops.api.names import GROUP, VERSION
from tests.unit.rules_table import ROWS, Row

REPO = Path(__file__).resolve().parents[2]
PLURAL = {kind: info.plural for kind, info in ALL_KINDS.items()}


def create(
    api_client: Any, namespace: str, obj: dict[str, Any], dry_run: bool = False
) -> dict[str, Any]:
    api = client.CustomObjectsApi(api_client)
    result: dict[str, Any] = api.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL[obj["kind"]],
        obj,
        dry_run="All" if dry_run else None,
        field_validation="Strict",
    )
    return result


def refusal(call: Any) -> str:
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status in (400, 422), info.value.body
    body = json.loads(info.value.body)
    return str(body.get("message", ""))


def test_discovery_names_short_names_and_category(kubectl: Kubectl) -> None:
    out = kubectl("api-resources", f"--api-group={GROUP}", "-o", "wide")
    for kind, plural in PLURAL.items():
        line = next(line for line in out.splitlines() if line.startswith(plural))
        assert kind in line and "true" in line  # namespaced
        assert "inferops" in line  # category
    short = kubectl("api-resources", f"--api-group={GROUP}", "--no-headers")
    assert {"aiapp", "rts", "bs"} <= set(short.split())


def test_examples_are_accepted(kubectl: Kubectl, namespace: str) -> None:
    examples = sorted(str(p) for p in (REPO / "examples").glob("*.yaml"))
    out = kubectl(
        "apply",
        "--server-side",
        "--field-manager=inferops-tests",
        "-n",
        namespace,
        *[a for path in examples for a in ("-f", path)],
    )
    assert out.count("serverside-applied") == len(examples)


SCHEMA_ROWS = [r for r in ROWS if r.old is None]


@pytest.mark.parametrize("row", SCHEMA_ROWS, ids=[r.id for r in SCHEMA_ROWS])
def test_table_row_on_the_api_server(api_client: Any, namespace: str, row: Row) -> None:
    obj = copy.deepcopy(row.obj)
    if row.layer != "schema" or row.valid:
        create(api_client, namespace, obj, dry_run=True)
        return
    message = refusal(lambda: create(api_client, namespace, obj, dry_run=True))
    for path, fragment in row.expected:
        assert path in message, (path, message)
        if (
            "must" in fragment
            or "cannot" in fragment
            or "only once" in fragment
            or "exactly" in fragment
            or "required when" in fragment
        ):
            assert fragment in message, (fragment, message)  # CEL: the same words


TRANSITIONS = [r for r in ROWS if r.old is not None]


@pytest.mark.parametrize("row", TRANSITIONS, ids=[r.id for r in TRANSITIONS])
def test_transition_rules_on_update(api_client: Any, namespace: str, row: Row) -> None:
    api = client.CustomObjectsApi(api_client)
    assert row.old is not None
    stored = create(api_client, namespace, copy.deepcopy(row.old))
    new = copy.deepcopy(row.obj)
    new["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]

    def replace() -> Any:
        return api.replace_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL[new["kind"]], new["metadata"]["name"], new
        )

    if row.valid:
        replace()
        return
    message = refusal(replace)
    for path, fragment in row.expected:
        assert path in message and fragment in message, message


def test_defaults_are_applied(api_client: Any, namespace: str) -> None:
    row = next(r for r in ROWS if r.id == "single-version-100")
    stored = create(api_client, namespace, copy.deepcopy(row.obj))
    spec = stored["spec"]
    assert spec["resourcePool"] == "public" and spec["websocket"] is False
    assert spec["stopped"] is False
    assert spec["versions"][0]["timeoutMinutes"] == 20
    assert spec["versions"][0]["computeNodes"] == 1
    app = next(r for r in ROWS if r.id == "app-ok")
    stored_app = create(api_client, namespace, copy.deepcopy(app.obj))
    version = stored_app["spec"]["versions"][0]
    assert version["port"] == 8080
    assert version["health"]["path"] == "/health"


def test_status_subresource_and_generation(api_client: Any, namespace: str) -> None:
    api = client.CustomObjectsApi(api_client)
    row = next(r for r in ROWS if r.id == "ratio-sum-100")
    stored = create(api_client, namespace, copy.deepcopy(row.obj))
    name, generation = stored["metadata"]["name"], stored["metadata"]["generation"]
    args = (GROUP, VERSION, namespace, "realtimeservices", name)

    # A status write changes status only: not spec, not generation.
    after_status = api.patch_namespaced_custom_object_status(
        *args,
        {
            "status": {"phase": "Running", "observedGeneration": generation},
            "spec": {"description": "ignored"},
        },
    )
    assert after_status["status"]["phase"] == "Running"
    assert after_status["spec"]["description"] == ""
    assert after_status["metadata"]["generation"] == generation

    # A spec write bumps generation and leaves status alone.
    after_spec = api.patch_namespaced_custom_object(
        *args, {"spec": {"description": "changed"}, "status": {"phase": "Failed"}}
    )
    assert after_spec["metadata"]["generation"] == generation + 1
    assert after_spec["status"]["phase"] == "Running"


def test_printer_columns(api_client: Any, kubectl: Kubectl, namespace: str) -> None:
    api = client.CustomObjectsApi(api_client)
    objects = yaml.safe_load_all((REPO / "examples" / "iris-realtime.yaml").read_text())
    for obj in [
        *objects,
        next(r.obj for r in ROWS if r.id == "bs-queue-name"),
        next(r.obj for r in ROWS if r.id == "app-ok"),
    ]:
        create(api_client, namespace, copy.deepcopy(obj))
    api.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "realtimeservices",
        "iris-online",
        {
            "status": {
                "phase": "Running",
                "traffic": "iris:1.0.0=70,iris:2.0.0=30",
                "ready": "3/3",
                "url": "http://iris-online.ns.svc",
                "message": "3/3 instances ready",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Running",
                        "message": "3/3 instances ready",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            }
        },
    )
    api.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "batchservices",
        "job",
        {
            "status": {
                "phase": "Deploying",
                "progressSummary": "0/3",
                "taskId": "t1",
                "message": "waiting for the model and workers; job-0-x: waiting for a node",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "job-0-x: waiting for a node",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            }
        },
    )
    out = kubectl("get", "rts,bs,aiapp", "-n", namespace)
    lines = [line.split() for line in out.splitlines() if line.strip()]
    headers = [line for line in lines if line[0] == "NAME"]
    assert headers[0] == ["NAME", "PHASE", "REASON", "TRAFFIC", "ROLLOUT", "READY", "URL", "AGE"]
    assert headers[1] == ["NAME", "PHASE", "REASON", "PROGRESS", "AGE"]
    assert headers[2] == ["NAME", "VERSIONS", "READY", "AGE"]
    row = next(line for line in lines if line[0].endswith("/iris-online"))
    # ROLLOUT is empty without a rollout: the split row goes on with READY
    assert row[1:6] == [
        "Running",
        "Running",
        "iris:1.0.0=70,iris:2.0.0=30",
        "3/3",
        "http://iris-online.ns.svc",
    ]
    job = next(line for line in lines if line[0].endswith("/job"))
    assert job[1:4] == ["Deploying", "Unschedulable", "0/3"]
    shown = printed(kubectl, namespace, "bs", "job")
    assert shown["MESSAGE"] == "waiting for the model and workers; job-0-x: waiting for a node"
    wide = kubectl("get", "bs", "-n", namespace, "-o", "wide")
    assert "TASK" in wide.splitlines()[0] and "t1" in wide
    assert "realtimeservice" in kubectl("get", "inferops", "-n", namespace)
