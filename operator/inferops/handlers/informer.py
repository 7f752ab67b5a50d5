"""Our own list and watch of the labelled children, without Kopf's per-event machinery.

Pods and Deployments report every step of a rollout: about 40 watch events per service.
Through Kopf each cost about a millisecond on the event loop (a Body, a Patch, loggers,
handler matching, a worker task per object): two thirds of the operator's CPU at a
hundred services. Here one thread per child kind (and watched namespace) lists with the
label selector, then watches from the list's resourceVersion, parses and trims each event
(`reconcile.trim`) and hands it to the event loop, which alone changes the `Store` and
calls the hook (the owner's pass). A watch that ends is resumed from the last version
seen (bookmarks keep it fresh); one the API server no longer serves from that version
(410 ExpiredError) is listed again, and what vanished meanwhile is reported as deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

from inferops.reconcile.kube import path
from inferops.reconcile.trim import trim
from inferops.reconcile.view import Scope, scope_of

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
# Called on the event loop with every child that appeared, changed or was deleted.
Hook = Callable[[Obj], None]

# The API server ends a watch after this many seconds; it is then resumed.
SERVER_TIMEOUT = 300
PAGE = 500
# After a failed list or watch (the API server restarting, a network blip).
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
# A kind the API server does not serve (no Gateway API yet) is looked for this often.
ABSENT_RETRY = 30.0
LISTED = "LISTED"


class ExpiredError(Exception):
    """The watch cannot resume from its version: list again."""


class Store:
    """One child kind's objects by owner scope. Changed only on the event loop, where the
    views are taken, so a view is a consistent snapshot."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.scopes: dict[Scope, dict[str, Obj]] = {}
        self._where: dict[tuple[str | None, str], Scope] = {}

    def get(self, scope: Scope) -> list[Obj]:
        return list(self.scopes.get(scope, {}).values())

    def __len__(self) -> int:
        return len(self._where)

    def put(self, obj: Obj) -> list[tuple[Obj, bool]]:
        """Keeps a service's child; an object that is no service's child is not kept. The
        changes, as (object, deleted): a child whose owner labels changed left its old
        owner, which hears of it as a deletion."""
        meta = obj["metadata"]
        key = (meta.get("namespace"), meta["name"])
        scope = scope_of(self.kind, key[0], meta.get("labels"))
        changes: list[tuple[Obj, bool]] = []
        old = self._where.get(key)
        if old is not None and old != scope:
            changes.append((self.scopes[old][key[1]], True))
            self._drop(key, old)
        if scope[2]:
            self.scopes.setdefault(scope, {})[key[1]] = obj
            self._where[key] = scope
            changes.append((obj, False))
        return changes

    def remove(self, obj: Mapping[str, Any]) -> bool:
        meta = obj["metadata"]
        key = (meta.get("namespace"), meta["name"])
        scope = self._where.get(key)
        if scope is None:
            return False
        self._drop(key, scope)
        return True

    def _drop(self, key: tuple[str | None, str], scope: Scope) -> None:
        del self._where[key]
        bucket = self.scopes[scope]
        del bucket[key[1]]
        if not bucket:
            del self.scopes[scope]

    def replace(self, namespace: str | None, objs: Sequence[Obj]) -> list[tuple[Obj, bool]]:
        """A fresh list of one namespace (None: all): what changed, as (object, deleted)."""
        listed = {(o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs}
        changes: list[tuple[Obj, bool]] = []
        for key, scope in list(self._where.items()):
            if (namespace is None or key[0] == namespace) and key not in listed:
                changes.append((self.scopes[scope][key[1]], True))
                self._drop(key, scope)
        for obj in objs:
            meta = obj["metadata"]
            known = self._where.get((meta.get("namespace"), meta["name"]))
            before = self.scopes[known][meta["name"]] if known else None
            version = meta.get("resourceVersion")
            if before is None or before["metadata"].get("resourceVersion") != version:
                changes += self.put(obj)
        return changes


def watch_lines(lines: Iterator[str | bytes]) -> Iterator[tuple[str, Obj]]:
    """(event type, object) from a watch stream's lines. An ERROR event with 410 raises
    `ExpiredError`; any other ERROR raises ApiException with its code."""
    for line in lines:
        if not line:
            continue
        event = json.loads(line)
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            code = int(obj.get("code") or 0)
            if code == 410:
                raise ExpiredError(obj.get("message", ""))
            raise ApiException(status=code, reason=str(obj.get("message", "")))
        yield str(kind), obj


class Informer:
    """List and watch of one kind in one namespace (None: every namespace), in a thread."""

    def __init__(
        self,
        api: Any,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        selector: str,
        deliver: Callable[[Informer, str, Any], None],
    ) -> None:
        self.api = api
        self.api_version = api_version
        self.kind = kind
        self.namespace = namespace
        self.selector = selector
        self.deliver = deliver
        self.stopped = threading.Event()

    def start(self) -> None:
        where = self.namespace or "all namespaces"
        threading.Thread(target=self.run, name=f"watch {self.kind} in {where}", daemon=True).start()

    def stop(self) -> None:
        """The thread ends at its next event or retry (it is a daemon: it never holds the
        process). Closing its response from here could block the event loop on the read
        the thread is in."""
        self.stopped.set()

    def _get(self, query: list[tuple[str, str]], timeout: tuple[float, float]) -> Any:
        return self.api.call_api(
            path(self.api_version, self.kind, self.namespace),
            "GET",
            query_params=[("labelSelector", self.selector), *query],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
            _request_timeout=timeout,
        )

    def page(self, query: list[tuple[str, str]]) -> Obj:
        """One page of a list."""
        page: Obj = json.loads(self._get(query, (10, 60)).data)
        return page

    @contextlib.contextmanager
    def stream(self, query: list[tuple[str, str]]) -> Iterator[Iterator[Any]]:
        """The lines of one watch; raises ExpiredError if it cannot start from its version."""
        try:
            response = self._get(query, (10, SERVER_TIMEOUT + 30))
        except ApiException as exc:
            if exc.status == 410:
                raise ExpiredError(str(exc.reason)) from None
            raise
        try:
            yield iter_resp_lines(response)
        finally:
            # Never back to the pool: a stream left halfway (an error, a stop) would hand
            # its unread chunks to the next request on that connection.
            response.close()

    def _object(self, obj: Mapping[str, Any]) -> Obj:
        return trim({**obj, "apiVersion": self.api_version, "kind": self.kind})

    def list(self) -> str:
        """Lists page by page; hands over every object at once. The list's version."""
        objs: list[Obj] = []
        token = ""
        while True:
            page = self.page([("limit", str(PAGE))] + ([("continue", token)] if token else []))
            objs += [self._object(item) for item in page.get("items") or ()]
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                break
        self.deliver(self, LISTED, objs)
        return str(page["metadata"]["resourceVersion"])

    def watch(self, version: str) -> None:
        """Watches from `version` until stopped (resuming each watch the server ends);
        raises ExpiredError when it must list again."""
        while not self.stopped.is_set():
            query = [
                ("watch", "true"),
                ("resourceVersion", version),
                ("allowWatchBookmarks", "true"),
                ("timeoutSeconds", str(SERVER_TIMEOUT)),
            ]
            with self.stream(query) as lines:
                for kind, obj in watch_lines(lines):
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind != "BOOKMARK":
                        self.deliver(self, kind, self._object(obj))

    def run(self) -> None:
        failures = 0
        while not self.stopped.is_set():
            try:
                version = self.list()
                failures = 0
                self.watch(version)
            except ExpiredError:
                continue
            except ApiException as exc:
                if exc.status == 404:  # not served here (yet): nothing of this kind
                    self.deliver(self, LISTED, [])
                    self.stopped.wait(ABSENT_RETRY)
                    continue
                self._failed(failures, f"{exc.status} {exc.reason}")
                failures += 1
            except Exception as exc:  # a connection lost, a malformed line: list again
                if self.stopped.is_set():
                    return
                self._failed(failures, repr(exc))
                failures += 1

    def _failed(self, failures: int, why: str) -> None:
        delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
        logger.warning("watching %s failed (%s); listing again in %ss", self.kind, why, delay)
        self.stopped.wait(delay)


class Informers:
    """The informers of every child kind, their stores and the moment all first listed."""

    def __init__(
        self,
        api: Any,
        kinds: Sequence[tuple[str, str]],
        namespaces: Sequence[str],
        *,
        selector: str,
        hook: Hook,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.hook = hook
        self.loop = loop
        self.stores = {kind: Store(kind) for _, kind in kinds}
        watched: Sequence[str | None] = tuple(namespaces) or (None,)
        self.informers = [
            Informer(
                api, api_version, kind, namespace, selector=selector, deliver=self._from_thread
            )
            for api_version, kind in kinds
            for namespace in watched
        ]
        self._waiting = set(self.informers)
        self.synced = asyncio.Event()
        self._lock = threading.Lock()
        self._pending: list[tuple[Informer, str, Any]] = []
        self._scheduled = False

    def start(self) -> None:
        for informer in self.informers:
            informer.start()

    def stop(self) -> None:
        for informer in self.informers:
            informer.stop()

    def _from_thread(self, informer: Informer, kind: str, payload: Any) -> None:
        # One wake-up of the event loop per burst, not per event: each costs a write to
        # and a read from the loop's self-pipe.
        with self._lock:
            self._pending.append((informer, kind, payload))
            if self._scheduled:
                return
            self._scheduled = True
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
        for informer, kind, payload in batch:
            self.receive(informer, kind, payload)

    def receive(self, informer: Informer, kind: str, payload: Any) -> None:
        """On the event loop: one event (or a whole list) into the store, then the hook."""
        store = self.stores[informer.kind]
        if kind == LISTED:
            changes = store.replace(informer.namespace, payload)
            self._waiting.discard(informer)
            if not self._waiting:
                self.synced.set()
        elif kind == "DELETED":
            changes = [(payload, True)] if store.remove(payload) else []
        else:
            changes = store.put(payload)
        for obj, _ in changes:
            self.hook(obj)
