"""A pass reads from a view of the watch caches and writes only what differs.

The handlers take a `View` of the caches for one object before its pass (the object, its
namespace's own-kind objects, its Namespace and its children), so a pass over an
unchanged service makes no API request at all. `ViewCluster` is the `Cluster` the
reconcilers get: reads come from the view (anything outside it falls through to the API),
an apply is skipped when the child already carries the hash of the same desired object,
and every write is remembered in `RecentWrites` so that the next pass sees it even before
its watch event arrives.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inferops.api.names import GROUP, LABEL_OWNER_KIND, LABEL_OWNER_NAME
from inferops.reconcile.kube import Cluster, Obj
from inferops.reconcile.trim import trim

# The hash of the desired object a child was last applied from (see ViewCluster.apply).
ANNOTATION_APPLIED = f"{GROUP}/applied-hash"
# How long a write is remembered when no watch event confirms it (a missed event or a
# child deleted meanwhile): after this the caches alone are trusted again.
RECENT_SECONDS = 60.0

# (kind, namespace, owner kind, owner name): the children of one owner; owner "" for the
# objects of a kind in a namespace (our own kinds); owner kind NAMED for one object by name
# (a Namespace).
NAMED = "=name"
Scope = tuple[str, str | None, str, str]
Ref = tuple[str, str | None, str]  # kind, namespace, name


def scope_of(kind: str, namespace: str | None, labels: Mapping[str, str] | None) -> Scope:
    labels = labels or {}
    if LABEL_OWNER_KIND in labels and LABEL_OWNER_NAME in labels:
        return (kind, namespace, labels[LABEL_OWNER_KIND], labels[LABEL_OWNER_NAME])
    return (kind, namespace, "", "")


def _labels_match(obj: Mapping[str, Any], labels: Mapping[str, str] | None) -> bool:
    own = (obj.get("metadata") or {}).get("labels") or {}
    return all(own.get(k) == v for k, v in (labels or {}).items())


def _ref(obj: Mapping[str, Any]) -> Ref:
    meta = obj["metadata"]
    return (str(obj["kind"]), meta.get("namespace"), str(meta["name"]))


def _version(obj: Mapping[str, Any] | None) -> int:
    """The resourceVersion as a number, -1 when it is not one. The API server's versions
    are etcd revisions; comparing them only decides whether our own write is newer than
    what a watch delivered, and an unexpected format simply trusts the watch."""
    value = str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")
    return int(value) if value.isdigit() else -1


def _homes(obj: Mapping[str, Any]) -> tuple[Scope, ...]:
    """The scopes an object belongs to: its owner's children, its kind in its namespace,
    itself by name."""
    meta = obj["metadata"]
    kind, namespace, name = str(obj["kind"]), meta.get("namespace"), str(meta["name"])
    return (
        scope_of(kind, namespace, meta.get("labels")),
        (kind, namespace, "", ""),
        (kind, namespace, NAMED, name),
    )


def spec_hash(obj: Mapping[str, Any]) -> str:
    """A digest of a desired object as the builders made it (our annotation left out)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass
class View:
    """Cached objects by scope. A scope present (even empty) is complete: what it lacks
    does not exist. Objects are shared with the caches and never changed in place."""

    scopes: dict[Scope, list[Obj]] = field(default_factory=dict)

    def find(self, kind: str, namespace: str | None, name: str) -> tuple[bool, Obj | None]:
        """(whether the view covers this kind in this namespace, the object if found)."""
        covered = False
        for (k, ns, owner_kind, owner), objects in self.scopes.items():
            if (k, ns) != (kind, namespace) or (owner_kind == NAMED and owner != name):
                continue
            covered = True
            for obj in objects:
                if obj["metadata"]["name"] == name:
                    return True, obj
        return covered, None


@dataclass
class _Written:
    obj: Obj | None  # None: deleted by us
    at: float


class RecentWrites:
    """Objects as our own writes returned them, until the caches hold that version (or
    newer). Shared by the worker threads (which record) and the event loop (which merges
    them into each view), hence the lock. Kept by kind and namespace, so that merging into
    a view looks only at the writes of its namespace."""

    def __init__(
        self, seconds: float = RECENT_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._writes: dict[tuple[str, str | None], dict[str, _Written]] = {}
        self._swept = clock()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(names) for names in self._writes.values())

    def _put(self, ref: Ref, written: _Written) -> None:
        with self._lock:
            self._writes.setdefault(ref[:2], {})[ref[2]] = written

    def wrote(self, obj: Mapping[str, Any]) -> None:
        self._put(_ref(obj), _Written(trim(obj), self.clock()))

    def deleted(self, kind: str, namespace: str | None, name: str) -> None:
        self._put((kind, namespace, name), _Written(None, self.clock()))

    def echo(self, obj: Mapping[str, Any]) -> bool:
        """Whether a watch event only brings back the version our own write returned."""
        version = _version(obj)
        kind, namespace, name = _ref(obj)
        with self._lock:
            written = self._writes.get((kind, namespace), {}).get(name)
        return version >= 0 and written is not None and _version(written.obj) == version

    def merge(self, view: View) -> View:
        """The view with our writes the caches have not caught up with; writes the caches
        hold now (or that are too old) are forgotten."""
        now = self.clock()
        with self._lock:
            if now - self._swept > 1.0:
                self._sweep(now)
            for kind, namespace in {scope[:2] for scope in view.scopes}:
                names = self._writes.get((kind, namespace))
                if not names:
                    continue
                for name, written in list(names.items()):
                    stale = now - written.at > self.seconds
                    if stale or self._apply(view, kind, namespace, name, written):
                        del names[name]
        return view

    def _sweep(self, now: float) -> None:
        self._swept = now
        for where, names in list(self._writes.items()):
            for name, written in list(names.items()):
                if now - written.at > self.seconds:
                    del names[name]
            if not names:
                del self._writes[where]

    @staticmethod
    def _apply(view: View, kind: str, namespace: str | None, name: str, written: _Written) -> bool:
        """Puts the write into the view's scopes; True when the caches caught up with it."""
        homes = _homes(written.obj) if written.obj is not None else ()
        for scope, objects in view.scopes.items():
            if scope[:2] != (kind, namespace):
                continue
            cached = next((o for o in objects if o["metadata"]["name"] == name), None)
            if written.obj is None:
                if cached is not None:
                    objects.remove(cached)
                continue
            ours = _version(written.obj)
            if cached is not None and (ours < 0 or _version(cached) >= ours):
                return True
            if scope in homes:
                if cached is not None:
                    objects.remove(cached)
                objects.append(written.obj)
        return False


class Discovery:
    """Whether the API server serves a kind, asked at most every `seconds` (in gateway-api
    mode every pass asks about HTTPRoutes)."""

    def __init__(
        self, api: Cluster, seconds: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.api = api
        self.seconds = seconds
        self.clock = clock
        self._answers: dict[tuple[str, str], tuple[float, bool]] = {}

    def served(self, api_version: str, kind: str) -> bool:
        now = self.clock()
        known = self._answers.get((api_version, kind))
        if known is not None and now - known[0] < self.seconds:
            return known[1]
        answer = self.api.served(api_version, kind)
        self._answers[(api_version, kind)] = (now, answer)
        return answer


class ViewCluster:
    """`Cluster` over a view: reads from the caches, writes through to the API."""

    def __init__(
        self,
        api: Cluster,
        view: View,
        writes: RecentWrites | None = None,
        discovery: Discovery | None = None,
    ) -> None:
        self.api = api
        self.view = view
        self.writes = writes if writes is not None else RecentWrites()
        self.discovery = discovery if discovery is not None else Discovery(api)

    def served(self, api_version: str, kind: str) -> bool:
        return self.discovery.served(api_version, kind)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        covered, found = self.view.find(kind, namespace, name)
        if not covered:
            return self.api.get(api_version, kind, namespace, name)
        return copy.deepcopy(found) if found is not None else None

    def get_metadata(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> Obj | None:
        return self.api.get_metadata(api_version, kind, namespace, name)

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Obj]:
        objects = self.view.scopes.get(scope_of(kind, namespace, labels))
        if objects is None:
            return self.api.list_objects(api_version, kind, namespace, labels)
        # Shared with the caches, not copied (a tenth of a pass's CPU): the reconcilers only
        # read what they list (tests/unit/test_view.py checks that a pass changes nothing).
        found = [o for o in objects if _labels_match(o, labels)]
        return sorted(found, key=lambda o: str(o["metadata"]["name"]))

    def apply(self, obj: Mapping[str, Any]) -> Obj:
        """Server-side apply, skipped when the cached child was applied from the same
        desired object. A child changed by hand keeps its change until its desired object
        changes (docs/design.md, "Reconciling from caches")."""
        meta = obj["metadata"]
        digest = spec_hash(obj)
        covered, current = self.view.find(obj["kind"], meta.get("namespace"), meta["name"])
        annotations = ((current or {}).get("metadata") or {}).get("annotations") or {}
        if covered and current is not None and annotations.get(ANNOTATION_APPLIED) == digest:
            return copy.deepcopy(current)
        marked = {
            **obj,
            "metadata": {
                **meta,
                "annotations": {**(meta.get("annotations") or {}), ANNOTATION_APPLIED: digest},
            },
        }
        result = self.api.apply(marked)
        self.writes.wrote(result or marked)
        return result

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        self.api.delete(api_version, kind, namespace, name)
        self.writes.deleted(kind, namespace, name)

    def patch(
        self, api_version: str, kind: str, namespace: str, name: str, body: Mapping[str, Any]
    ) -> Obj:
        result = self.api.patch(api_version, kind, namespace, name, body)
        self.writes.wrote(result)
        return result

    def patch_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> Obj:
        result = self.api.patch_status(kind, namespace, name, status)
        self.writes.wrote(result)
        return result


def view_of(objects: Iterable[Mapping[str, Any]], scopes: Iterable[Scope]) -> View:
    """A view holding `scopes`, filled from `objects` (trimmed): for tests and tools that
    have objects at hand rather than caches."""
    view = View({scope: [] for scope in scopes})
    for obj in objects:
        for scope in _homes(obj):
            if scope in view.scopes:
                view.scopes[scope].append(trim(obj))
                break
    return view
