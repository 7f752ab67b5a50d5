"""The data-collection agent on the real node: a model's server-sent events come through the
stable Service (router, agent, model) as the model sends them, and the agent's record of
the exchange, written to object storage, has its credentials redacted.

The reference model server does not stream, so the model here is a few lines of aiohttp
run by the project image: `GET /events` sends one event, then holds the answer open until
`POST /release` arrives (through the same Service), then sends the second. A client that
receives the first event before it releases the second proves that no hop waited for the
end of the answer; an agent reading whole bodies would leave it waiting until its socket
timeout instead.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
from typing import Any

import pytest
from k8s_helpers import Kubectl, wait_for
from kubernetes import client

from tests.e2e.support import (
    PROJECT_IMAGE,
    NodeS3,
    Operator,
    apply_objects,
    fresh_buckets,
    http_json,
    json_lines,
    wait_phase,
)

pytestmark = pytest.mark.timeout(600)

APP, SERVICE, COLLECT = "sse-model", "sse-collected", "inferops-stream"
ENDPOINT = "http://minio.storage.svc:9000"
SECRETS = ("e2e-api-key", "e2e-session", "e2e-bearer")
FIRST, SECOND = b"id: 1\ndata: first\n\n", b"id: 2\ndata: second\n\n"

MODEL = """
import asyncio
from aiohttp import web

release = asyncio.Event()

async def health(request):
    return web.json_response({"status": "ok"})

async def events(request):
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"id: 1\\ndata: first\\n\\n")
    await asyncio.wait_for(release.wait(), 300)
    release.clear()
    await response.write(b"id: 2\\ndata: second\\n\\n")
    await response.write_eof()
    return response

async def do_release(request):
    release.set()
    return web.json_response({"released": True})

async def predict(request):
    return web.json_response({"echo": await request.json()})

app = web.Application()
app.router.add_get("/health", health)
app.router.add_get("/events", events)
app.router.add_post("/release", do_release)
app.router.add_post("/", predict)
web.run_app(app, host="0.0.0.0", port=8080, print=None)
"""


def application() -> dict[str, Any]:
    schema = {"type": "object", "properties": {"x": {"type": "number"}}}
    return {
        "apiVersion": "serving.inferops.dev/v1alpha1",
        "kind": "AIApplication",
        "metadata": {"name": APP},
        "spec": {
            "versions": [
                {
                    "version": "1.0.0",
                    "image": PROJECT_IMAGE,
                    "command": ["python3", "-c", MODEL],
                    "port": 8080,
                    "health": {"path": "/health"},
                    "apis": [
                        {
                            "method": "post",
                            "url": "/",
                            "request": {"Content-type": "application/json", "data": schema},
                        }
                    ],
                }
            ]
        },
    }


def service() -> dict[str, Any]:
    return {
        "apiVersion": "serving.inferops.dev/v1alpha1",
        "kind": "RealTimeService",
        "metadata": {"name": SERVICE},
        "spec": {
            "storage": {"endpoint": ENDPOINT, "secretRef": {"name": "object-storage"}},
            "dataCollection": {
                "enabled": True,
                "outputPath": f"s3://{COLLECT}/records/",
                "redactQueryParameters": ["session"],
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


def read_event(response: http.client.HTTPResponse) -> bytes:
    """One SSE event (through the blank line ending it), read line by line."""
    event = b""
    while not event.endswith(b"\n\n"):
        line = response.readline()
        if not line:
            break
        event += line
    return event


def records(s3: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(line, record) for _, line, record in json_lines(s3, COLLECT)]


def test_sse_streams_through_the_agent_and_records_are_redacted(
    operator: Operator,
    kubectl: Kubectl,
    api_client: Any,
    object_store: NodeS3,
    storage_secret: str,
) -> None:
    ns = operator.apps
    s3 = fresh_buckets(object_store, COLLECT)
    apply_objects(kubectl, ns, [application(), service()])
    try:
        wait_phase(api_client, ns, "realtimeservices", SERVICE, ("Running",))
        ip = client.CoreV1Api(api_client).read_namespaced_service(SERVICE, ns).spec.cluster_ip
        wait_for(lambda: _answers(f"http://{ip}/"), timeout=60, what="the stable Service answering")

        conn = http.client.HTTPConnection(ip, 80, timeout=60)
        conn.request(
            "GET",
            f"/events?api_key={SECRETS[0]}&session={SECRETS[1]}&x=1",
            headers={"Authorization": f"Bearer {SECRETS[2]}", "Accept": "text/event-stream"},
        )
        response = conn.getresponse()
        assert response.status == 200, response.read()
        assert response.getheader("Content-Type") == "text/event-stream"
        assert response.getheader("Transfer-Encoding") == "chunked"
        # The model holds its second event until /release: the first must come alone.
        assert read_event(response) == FIRST
        assert http_json(f"http://{ip}/release", {})[0] == 200
        assert read_event(response) == SECOND
        assert response.read() == b""
        conn.close()

        # The agent flushes every 10 s: wait for the record of the stream.
        deadline = time.monotonic() + 90
        found: list[tuple[str, dict[str, Any]]] = []
        while time.monotonic() < deadline and not found:
            found = [(raw, r) for raw, r in records(s3) if r["path"] == "/events"]
            time.sleep(2)
        assert found, [r for _, r in records(s3)]
        [(raw, record)] = found
        assert record["query"] == "api_key=[REDACTED]&session=[REDACTED]&x=1"
        assert record["requestHeaders"]["authorization"] == "[REDACTED]"
        assert not any(secret in raw for secret in SECRETS), raw
        assert base64.b64decode(record["response"]["base64"]) == FIRST + SECOND
        assert record["responseTruncated"] is False
        assert record["responseBytes"] == len(FIRST + SECOND)
        print(f"record: {json.dumps(record)[:400]}")
    finally:
        kubectl("delete", "-n", ns, "rts", SERVICE, "--ignore-not-found")
        kubectl("delete", "-n", ns, "aiapp", APP, "--ignore-not-found")


def _answers(url: str) -> bool:
    try:
        return http_json(url, {"x": 1})[0] == 200
    except OSError:
        return False
