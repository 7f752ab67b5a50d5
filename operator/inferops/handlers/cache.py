"""Watch-fed caches: Kopf indexes of our own kinds and Namespaces, stores of every child.

Kopf fills every index from its list and watch before any handler runs and keeps it
current from the same watch the handlers see, so a pass reads the cluster from memory.
Children are watched with a label selector on the server (only objects labelled
managed-by=inferops reach this process) and kept trimmed (`reconcile.trim`): by our own
informers (`handlers.informer`, a fraction of Kopf's cost per event), or with peering by
Kopf indexes too, since Kopf stops only its own watches when it pauses the operator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import kopf

from inferops.api.kinds import ALL_KINDS
from inferops.api.names import API_VERSION, KIND_APPLICATION, LABEL_MANAGED_BY
from inferops.handlers.informer import Store
from inferops.reconcile.kube import PLURALS
from inferops.reconcile.trim import trim
from inferops.reconcile.view import NAMED, Scope, View, scope_of
from inferops.resources.desired import CHILD_KINDS
from inferops.resources.labels import MANAGED_BY

OWN_KINDS = tuple(ALL_KINDS)
POD = ("v1", "Pod")
CHILDREN: dict[str, tuple[tuple[str, str], ...]] = {
    owner: (*kinds, POD) for owner, kinds in CHILD_KINDS.items()
}
CHILD_RESOURCES = sorted({child for kinds in CHILDREN.values() for child in kinds})
NAMESPACE = ("v1", "Namespace")
SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


def index_id(kind: str) -> str:
    return f"cache_{kind.lower()}"


def resource(api_version: str, kind: str) -> tuple[str, str, str]:
    group, _, version = api_version.rpartition("/")
    return (group, version, PLURALS[kind])


# Called with every indexed child (not on deletion): (memo, kwargs, the trimmed object).
ChildHook = Callable[[Any, Mapping[str, Any], dict[str, Any]], None]


def _indexer(api_version: str, kind: str, key: Any, hook: ChildHook | None = None) -> Any:
    async def index(body: kopf.Body, memo: Any, **kwargs: Any) -> dict[Scope, Any] | None:
        meta = body.get("metadata") or {}
        scope = key(meta)
        if scope is None:
            return None
        kept = trim({**body, "apiVersion": api_version, "kind": kind})
        if hook is not None:
            hook(memo, kwargs, kept)
        return {scope: kept}

    return index


def _child_scope(kind: str) -> Any:
    def key(meta: Mapping[str, Any]) -> Scope | None:
        scope = scope_of(kind, meta.get("namespace"), meta.get("labels"))
        return scope if scope[2] else None  # not one of a service's children

    return key


def register() -> None:
    """Registers the indexes of our own kinds and Namespaces (at import of the handlers)."""
    for kind in OWN_KINDS:
        kopf.index(*resource(API_VERSION, kind), id=index_id(kind))(
            _indexer(API_VERSION, kind, lambda m, k=kind: (k, m.get("namespace"), "", ""))
        )
    kopf.index(*resource(*NAMESPACE), id=index_id("Namespace"))(
        _indexer(*NAMESPACE, lambda m: ("Namespace", None, NAMED, m.get("name")))
    )


def register_children(child_hook: ChildHook) -> None:
    """Kopf indexes of the children, for an operator that peers. `child_hook` sees every
    child as it is indexed: the index is the one place Kopf hands over each event of a
    child, so no handler runs per child event."""
    for api_version, kind in CHILD_RESOURCES:
        kopf.index(*resource(api_version, kind), id=index_id(kind))(
            _indexer(api_version, kind, _child_scope(kind), child_hook)
        )


def select_children(settings: kopf.OperatorSettings) -> None:
    """Only our labelled children are listed and watched (a server-side label selector)."""
    for api_version, kind in CHILD_RESOURCES:
        settings.watching.label_selectors[resource(api_version, kind)] = SELECTOR


class Caches:
    """The indexes, as handed to the handlers, the child stores, and the views a pass reads."""

    def __init__(self) -> None:
        self.indexes: dict[str, Any] = {}
        self.stores: Mapping[str, Store] = {}

    def bind(self, kwargs: Mapping[str, Any]) -> None:
        """Keeps the index objects Kopf passes to every handler (they are live)."""
        if not self.indexes:
            self.indexes = {k: v for k, v in kwargs.items() if k.startswith("cache_")}

    def _scope(self, scope: Scope) -> list[dict[str, Any]]:
        store = self.stores.get(scope[0])
        if store is not None:
            return store.get(scope)
        index = self.indexes.get(index_id(scope[0]))
        if index is None or scope not in index:
            return []
        return list(index[scope])

    def objects(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        """Our own kind's objects in a namespace, as cached."""
        return self._scope((kind, namespace, "", ""))

    def view(self, kind: str, namespace: str, name: str) -> View:
        return View({scope: self._scope(scope) for scope in view_scopes(kind, namespace, name)})


def view_scopes(kind: str, namespace: str, name: str) -> list[Scope]:
    """What a pass over one object reads: the own-kind objects of its namespace (its
    applications, its siblings for quotas), its Namespace and its children."""
    scopes: list[Scope] = [(k, namespace, "", "") for k in OWN_KINDS]
    scopes.append(("Namespace", None, NAMED, namespace))
    if kind != KIND_APPLICATION:
        scopes += [(child, namespace, kind, name) for _, child in CHILDREN[kind]]
    return scopes
