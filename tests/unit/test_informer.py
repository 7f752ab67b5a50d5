"""The child stores the informers keep, and how a watch stream is read."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from inferops.api.names import LABEL_OWNER_KIND, LABEL_OWNER_NAME
from inferops.handlers.informer import LISTED, ExpiredError, Informer, Store, watch_lines

Obj = dict[str, Any]


def pod(name: str, owner: str | None, version: str = "1", namespace: str = "ns") -> Obj:
    labels = {LABEL_OWNER_KIND: "RealTimeService", LABEL_OWNER_NAME: owner} if owner else {}
    meta = {"name": name, "namespace": namespace, "resourceVersion": version, "labels": labels}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta}


def scope(owner: str, namespace: str = "ns") -> tuple[str, str, str, str]:
    return ("Pod", namespace, "RealTimeService", owner)


def names(changes: list[tuple[Obj, bool]]) -> list[tuple[str, str, bool]]:
    return [
        (o["metadata"]["name"], o["metadata"]["labels"].get(LABEL_OWNER_NAME, ""), d)
        for o, d in changes
    ]


def test_a_child_is_kept_under_its_owner() -> None:
    store = Store("Pod")
    assert names(store.put(pod("a", "svc"))) == [("a", "svc", False)]
    assert store.get(scope("svc")) == [pod("a", "svc")]
    assert store.get(scope("other")) == []
    assert len(store) == 1


def test_an_object_of_no_service_is_not_kept() -> None:
    store = Store("Pod")
    assert store.put(pod("a", None)) == []
    assert len(store) == 0 and store.scopes == {}


def test_a_child_moved_to_another_owner_leaves_the_first() -> None:
    store = Store("Pod")
    store.put(pod("a", "one"))
    changes = store.put(pod("a", "two", version="2"))
    assert names(changes) == [("a", "one", True), ("a", "two", False)]
    assert store.get(scope("one")) == [] and scope("one") not in store.scopes
    assert [o["metadata"]["name"] for o in store.get(scope("two"))] == ["a"]


def test_a_child_whose_owner_label_was_removed_is_a_deletion_for_its_owner() -> None:
    store = Store("Pod")
    store.put(pod("a", "one"))
    assert names(store.put(pod("a", None, version="2"))) == [("a", "one", True)]
    assert len(store) == 0


def test_removing() -> None:
    store = Store("Pod")
    store.put(pod("a", "svc"))
    assert store.remove(pod("a", "svc")) is True
    assert store.remove(pod("a", "svc")) is False
    assert store.scopes == {}


def test_a_new_list_reports_what_vanished_and_what_changed_only() -> None:
    store = Store("Pod")
    for name in ("same", "changed", "gone"):
        store.put(pod(name, "svc"))
    changes = store.replace(
        None, [pod("same", "svc"), pod("changed", "svc", version="2"), pod("new", "svc")]
    )
    assert sorted(names(changes)) == [
        ("changed", "svc", False),
        ("gone", "svc", True),
        ("new", "svc", False),
    ]
    kept = {o["metadata"]["name"] for o in store.get(scope("svc"))}
    assert kept == {"same", "changed", "new"}


def test_a_namespace_list_replaces_only_that_namespace() -> None:
    store = Store("Pod")
    store.put(pod("a", "svc", namespace="one"))
    store.put(pod("b", "svc", namespace="two"))
    assert names(store.replace("one", [])) == [("a", "svc", True)]
    assert store.get(scope("svc", "two")) == [pod("b", "svc", namespace="two")]


def line(kind: str, obj: Obj) -> str:
    return json.dumps({"type": kind, "object": obj})


def test_watch_lines_yields_each_event() -> None:
    lines = [line("ADDED", pod("a", "s")), "", line("BOOKMARK", {"metadata": {}}).encode()]
    assert [(k, o["metadata"].get("name")) for k, o in watch_lines(iter(lines))] == [
        ("ADDED", "a"),
        ("BOOKMARK", None),
    ]


def test_an_expired_version_asks_for_a_new_list() -> None:
    expired = {"kind": "Status", "code": 410, "message": "too old resource version: 1 (5)"}
    with pytest.raises(ExpiredError, match="too old"):
        list(watch_lines(iter([line("ADDED", pod("a", "s")), line("ERROR", expired)])))


def test_another_error_event_is_an_api_error() -> None:
    with pytest.raises(ApiException) as raised:
        list(watch_lines(iter([line("ERROR", {"code": 500, "message": "etcd down"})])))
    assert raised.value.status == 500


class Scripted(Informer):
    """An informer whose API answers are scripted: list pages and watch streams in order.
    When the script runs out, the informer is stopped."""

    def __init__(self, script: list[Any]) -> None:
        self.delivered: list[tuple[str, list[str]]] = []
        self.asked: list[dict[str, str]] = []
        super().__init__(None, "v1", "Pod", None, selector="s", deliver=self._deliver)
        self.script = script

    def _deliver(self, _: Informer, kind: str, payload: Any) -> None:
        objs = payload if kind == LISTED else [payload]
        self.delivered.append((kind, [o["metadata"]["name"] for o in objs]))

    def _next(self, query: list[tuple[str, str]]) -> Any:
        self.asked.append(dict(query))
        if not self.script:
            self.stopped.set()
            raise ConnectionError("script over")
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def page(self, query: list[tuple[str, str]]) -> Obj:
        page: Obj = self._next(query)
        return page

    @contextlib.contextmanager
    def stream(self, query: list[tuple[str, str]]) -> Iterator[Iterator[Any]]:
        yield iter(self._next(query))


def listing(version: str, *objs: Obj, more: str = "") -> Obj:
    return {"metadata": {"resourceVersion": version, "continue": more}, "items": list(objs)}


def test_an_expired_watch_lists_again_from_a_fresh_version() -> None:
    informer = Scripted(
        [
            listing("10", pod("a", "s"), more="next"),
            listing("10", pod("b", "s")),
            [
                line("MODIFIED", pod("a", "s", "11")),
                line("BOOKMARK", {"metadata": {"resourceVersion": "15"}}),
            ],
            [line("ERROR", {"code": 410, "message": "too old"})],
            listing("20", pod("a", "s", "11")),
            [],  # the server ends the watch: resumed from the same version
        ]
    )
    informer.run()
    assert informer.delivered == [
        (LISTED, ["a", "b"]),
        ("MODIFIED", ["a"]),
        (LISTED, ["a"]),  # b vanished meanwhile: the store reports it deleted
    ]
    watches = [q for q in informer.asked if q.get("watch")]
    assert [q["resourceVersion"] for q in watches] == ["10", "15", "20", "20"]
    assert all(q["allowWatchBookmarks"] == "true" for q in watches)
    assert [q.get("continue") for q in informer.asked if not q.get("watch")] == [None, "next", None]


def test_a_kind_not_served_is_empty_and_looked_for_again(monkeypatch: Any) -> None:
    monkeypatch.setattr("inferops.handlers.informer.ABSENT_RETRY", 0)
    informer = Scripted([ApiException(status=404), listing("3", pod("a", "s")), []])
    informer.run()
    assert informer.delivered == [(LISTED, []), (LISTED, ["a"])]


def test_a_failed_list_is_retried(monkeypatch: Any) -> None:
    monkeypatch.setattr("inferops.handlers.informer.RETRY_DELAYS", (0.0,))
    informer = Scripted([ApiException(status=500), ConnectionError("reset"), listing("3")])
    informer.run()
    assert informer.delivered == [(LISTED, [])]
