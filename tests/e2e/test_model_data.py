"""A model fetched from object storage (modelUri: the fetch-model init container) and served,
with dataCollection's agent sidecar writing sampled request/response lines for real
requests back to object storage."""

from __future__ import annotations

import copy
import gzip
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import realnode
import yaml
from k8s_helpers import Kubectl, wait_for
from kubernetes import client

from tests.e2e.support import (
    PROJECT_IMAGE,
    REPO,
    NodeS3,
    Operator,
    apply_objects,
    fresh_buckets,
    http_json,
    json_lines,
    wait_phase,
)

pytestmark = pytest.mark.timeout(600)

MODELS, COLLECT = "inferops-models", "inferops-collect"
APP, SERVICE = "iris-fetched", "iris-collected"
ENDPOINT = "http://minio.storage.svc:9000"


def application() -> dict[str, Any]:
    """The iris example's 1.0.0, its model taken from object storage instead of the image."""
    example = yaml.safe_load((REPO / "examples" / "iris-application.yaml").read_text())
    version = copy.deepcopy(example["spec"]["versions"][0])
    version.update(
        image=PROJECT_IMAGE,
        args=["model-server", "--model", "/mnt/models"],
        modelUri=f"s3://{MODELS}/iris/",
    )
    return {
        "apiVersion": example["apiVersion"],
        "kind": "AIApplication",
        "metadata": {"name": APP},
        "spec": {"versions": [version]},
    }


def service() -> dict[str, Any]:
    return {
        "apiVersion": "serving.inferops.dev/v1alpha1",
        "kind": "RealTimeService",
        "metadata": {"name": SERVICE},
        "spec": {
            "resourcePool": "public",
            "storage": {"endpoint": ENDPOINT, "secretRef": {"name": "object-storage"}},
            "dataCollection": {
                "enabled": True,
                "sampleRatio": 1.0,
                "outputPath": f"s3://{COLLECT}/requests/",
            },
            "versions": [
                {
                    "application": APP,
                    "version": "1.0.0",
                    "trafficRatio": 100,
                    "specification": "cpu.2u4g",
                    "computeNodes": 1,
                }
            ],
        },
    }


def collected(s3: Any) -> list[dict[str, Any]]:
    return [dict(record, key=key) for key, _, record in json_lines(s3, COLLECT)]


def test_fetched_model_serves_and_the_agent_collects_requests(
    operator: Operator,
    kubectl: Kubectl,
    api_client: Any,
    object_store: NodeS3,
    storage_secret: str,
) -> None:
    ns = operator.apps
    s3 = fresh_buckets(object_store, MODELS, COLLECT)
    for f in sorted(Path(REPO / "examples" / "iris" / "model").iterdir()):
        s3.put_object(Bucket=MODELS, Key=f"iris/{f.name}", Body=f.read_bytes())
    apply_objects(kubectl, ns, [application(), service()])
    try:
        wait_phase(api_client, ns, "realtimeservices", SERVICE, ("Running",))
        core = client.CoreV1Api(api_client)
        selector = f"serving.inferops.dev/owner-name={SERVICE},app.kubernetes.io/component!=router"
        [pod] = core.list_namespaced_pod(ns, label_selector=selector).items
        assert pod.spec.node_name == realnode.NODE_NAME
        [fetch] = pod.status.init_container_statuses
        assert fetch.name == "fetch-model" and fetch.state.terminated.exit_code == 0
        assert {c.name for c in pod.status.container_statuses} == {"model", "agent"}

        ip = core.read_namespaced_service(SERVICE, ns).spec.cluster_ip
        sent = [
            {
                "data": {
                    "req_data": [
                        {"input_1": 4.0 + i / 10, "input_2": 3.0, "input_3": 1.4, "input_4": 0.2}
                    ]
                }
            }
            for i in range(12)
        ]
        for body in sent:
            code, answer = wait_for(
                lambda b=body: _post(f"http://{ip}/", b),
                timeout=30,
                what="the stable Service answering",
            )
            assert code == 200 and answer["resp_data"][0]["predictresult"] == "setosa", answer

        # the agent flushes every 10 s: wait for every request to be written
        deadline = time.monotonic() + 60
        lines: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            lines = [line for line in collected(s3) if line.get("method") == "POST"]
            if len(lines) >= len(sent):
                break
            time.sleep(2)
        assert sorted(json.dumps(line["request"], sort_keys=True) for line in lines) == sorted(
            json.dumps(b, sort_keys=True) for b in sent
        )
        for line in lines:
            assert line["status"] == 200 and line["response"]["resp_data"][0]["predictresult"]
            assert line["service"] == SERVICE and line["version"] == f"{APP}:1.0.0"
            assert line["pod"] == pod.metadata.name
            # the folder is the version with `:` made safe for object names
            assert line["key"].startswith(f"requests/{SERVICE}/{APP}_1.0.0/{pod.metadata.name}-")
        print(f"collected {len(lines)} lines in {sorted({line['key'] for line in lines})}")

        # Hostile bodies get 400/413 with a message from the model server in the pod, never
        # a 500 (which the batch worker would retry).
        for body, headers, status, message in HOSTILE:
            code, answer = _post_raw(f"http://{ip}/", body, headers)
            assert code == status and message in answer["error"], (code, answer)
    finally:
        kubectl("delete", "-n", ns, "rts", SERVICE, "--ignore-not-found")
        kubectl("delete", "-n", ns, "aiapp", APP, "--ignore-not-found")


HOSTILE = [
    (b'{"data": {"req_data": ' + b"[" * 1000 + b"]" * 1000 + b"}}", {}, 400, "nested deeper"),
    (b'{"data": {"req_data": [{"input_1": ' + b"9" * 5000 + b"}]}}", {}, 400, "256 digits"),
    (
        gzip.compress(b" " * (20 * 1024 * 1024)),  # 20 KB expanding past the 16 MiB limit
        {"Content-Encoding": "gzip"},
        413,
        "16777216",  # the agent in front refuses it first, as the model server would
    ),
]


def _post_raw(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST")
    for name, value in {"Content-Type": "application/json", **headers}.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _post(url: str, body: Any) -> tuple[int, Any] | None:
    try:
        return http_json(url, body)
    except OSError:
        return None
