"""examples/iris-websocket-*.yaml: a client streams predictions through the stable Service of
a RealTimeService in websocket mode (the router passes the upgrade to the model's /ws)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
import realnode
from k8s_helpers import Kubectl
from kubernetes import client

from tests.e2e.support import Operator, apply_examples, wait_phase

pytestmark = pytest.mark.timeout(600)

SERVICE = "iris-websocket-online"
ROWS = [
    {"input_1": 5.1, "input_2": 3.5, "input_3": 1.4, "input_4": 0.2},
    {"input_1": 5.9, "input_2": 3.0, "input_3": 4.2, "input_4": 1.5},
    {"input_1": 6.7, "input_2": 3.0, "input_3": 5.2, "input_4": 2.3},
]


async def converse(url: str, messages: int) -> list[list[dict[str, Any]]]:
    """One connection; each message is the POST body, answered item by item then done."""
    conversations = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        for _ in range(messages):
            await ws.send_str(json.dumps({"data": {"req_data": ROWS}}))
            replies = []
            while True:
                reply = await asyncio.wait_for(ws.receive_json(), timeout=10)
                replies.append(reply)
                if reply.get("done") or "error" in reply:
                    break
            conversations.append(replies)
        await ws.send_str("{not json")
        conversations.append([await asyncio.wait_for(ws.receive_json(), timeout=10)])
    return conversations


def test_messages_flow_through_the_stable_service(
    operator: Operator, kubectl: Kubectl, api_client: Any
) -> None:
    ns = operator.apps
    apply_examples(kubectl, ns, "iris-websocket-application.yaml", "iris-websocket-realtime.yaml")
    try:
        wait_phase(api_client, ns, "realtimeservices", SERVICE, ("Running",))
        selector = f"serving.inferops.dev/owner-name={SERVICE}"
        pods = client.CoreV1Api(api_client).list_namespaced_pod(ns, label_selector=selector)
        assert pods.items and all(p.spec.node_name == realnode.NODE_NAME for p in pods.items)
        ip = client.CoreV1Api(api_client).read_namespaced_service(SERVICE, ns).spec.cluster_ip

        conversations = asyncio.run(converse(f"ws://{ip}/ws", messages=20))
        *predictions, error = conversations
        for replies in predictions:
            assert [r.get("index") for r in replies[:-1]] == [0, 1, 2], replies
            assert [r["predictresult"] for r in replies[:-1]] == [
                "setosa",
                "versicolor",
                "virginica",
            ]
            assert replies[-1] == {"done": True, "count": 3}
        assert "not valid JSON" in error[0]["error"]  # an error message; the socket stayed up
    finally:
        kubectl("delete", "-n", ns, "rts", SERVICE, "--ignore-not-found")
        kubectl("delete", "-n", ns, "aiapp", "iris-websocket", "--ignore-not-found")
