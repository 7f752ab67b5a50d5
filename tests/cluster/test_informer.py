"""The informers against a real kube-apiserver: listed, then watched, with the label
selector applied by the server. (A watch the server no longer serves, 410, needs an etcd
compaction: tests/unit/test_informer.py scripts it.)"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kubernetes import client

from inferops.api.names import LABEL_MANAGED_BY, LABEL_OWNER_KIND, LABEL_OWNER_NAME
from inferops.handlers.cache import SELECTOR
from inferops.handlers.informer import Informers
from inferops.resources.labels import MANAGED_BY

CONFIGMAP = ("v1", "ConfigMap")


def configmap(name: str, owner: str, managed: bool = True) -> client.V1ConfigMap:
    labels = {LABEL_OWNER_KIND: "RealTimeService", LABEL_OWNER_NAME: owner}
    if managed:
        labels[LABEL_MANAGED_BY] = MANAGED_BY
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels))


async def until(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_the_informer_follows_the_labelled_children(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, configmap("before", "svc"))

    async def scenario() -> list[tuple[str, str]]:
        seen: list[dict[str, Any]] = []
        informers = Informers(
            api_client,
            [CONFIGMAP],
            [namespace],
            selector=SELECTOR,
            hook=seen.append,
            loop=asyncio.get_running_loop(),
        )
        store = informers.stores["ConfigMap"]

        def held(owner: str) -> set[str]:
            return {
                o["metadata"]["name"]
                for o in store.get(("ConfigMap", namespace, "RealTimeService", owner))
            }

        informers.start()
        try:
            await asyncio.wait_for(informers.synced.wait(), 30)
            assert held("svc") == {"before"}
            create = core.create_namespaced_config_map
            await asyncio.to_thread(create, namespace, configmap("stranger", "svc", managed=False))
            await asyncio.to_thread(create, namespace, configmap("after", "svc"))
            await until(lambda: held("svc") == {"before", "after"}, "the new child")
            moved = {"metadata": {"labels": {LABEL_OWNER_NAME: "other"}}}
            await asyncio.to_thread(core.patch_namespaced_config_map, "after", namespace, moved)
            await until(lambda: held("other") == {"after"}, "the child under its new owner")
            assert held("svc") == {"before"}
            await asyncio.to_thread(core.delete_namespaced_config_map, "before", namespace)
            await until(lambda: not held("svc"), "the deleted child gone")
        finally:
            informers.stop()
        # what the hook heard, in order (the owner whose pass it queues)
        return [(o["metadata"]["name"], o["metadata"]["labels"][LABEL_OWNER_NAME]) for o in seen]

    heard = asyncio.run(scenario())
    assert ("stranger", "svc") not in heard  # the server applied the label selector
    assert heard == [
        ("before", "svc"),  # listed
        ("after", "svc"),  # created
        ("after", "svc"),  # left its owner
        ("after", "other"),  # joined the other
        ("before", "svc"),  # deleted
    ]
