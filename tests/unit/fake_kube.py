"""An in-memory `Cluster` (our own interface boundary) for reconciler table tests: objects
in, and a record of every apply, delete, patch and status write out."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str, str | None, str]


def _merge(into: Obj, patch: Mapping[str, Any]) -> None:
    """RFC 7386 merge patch: null deletes, objects merge, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


class FakeKube:
    """Stores objects by (apiVersion, kind, namespace, name), like the API server would.

    `served` is what discovery answers (everything unless a kind is listed as missing).
    """

    def __init__(self, objects: Iterable[Obj] = (), missing: Iterable[str] = ()) -> None:
        self.objects: dict[Key, Obj] = {}
        self.missing = set(missing)
        self.actions: list[str] = []
        for obj in objects:
            self.objects[self._key(obj)] = copy.deepcopy(obj)

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> Key:
        meta = obj["metadata"]
        return (obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])

    def of(self, verb: str) -> list[str]:
        """'Kind/name' for every action of this verb, in order."""
        return [a.split(" ", 1)[1] for a in self.actions if a.startswith(f"{verb} ")]

    def served(self, api_version: str, kind: str) -> bool:
        return kind not in self.missing

    def apply(self, obj: Mapping[str, Any]) -> Obj:
        key = self._key(obj)
        stored = copy.deepcopy(dict(obj))
        old = self.objects.get(key)
        if old is not None and "status" in old:  # apply leaves the status to its owner
            stored["status"] = old["status"]
        self.objects[key] = stored
        self.actions.append(f"apply {obj['kind']}/{obj['metadata']['name']}")
        return copy.deepcopy(stored)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        found = self.objects.get((api_version, kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def get_metadata(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> Obj | None:
        """What the API server answers for PartialObjectMetadata: metadata, no data."""
        found = self.objects.get((api_version, kind, namespace, name))
        if found is None:
            return None
        meta = {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata"}
        return {**meta, "metadata": copy.deepcopy(found["metadata"])}

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Obj]:
        if kind in self.missing:
            return []
        return [
            copy.deepcopy(obj)
            for (av, k, ns, _), obj in sorted(self.objects.items(), key=lambda i: str(i[0]))
            if (av, k) == (api_version, kind)
            and (namespace is None or ns == namespace)
            and all(
                (obj["metadata"].get("labels") or {}).get(n) == v for n, v in (labels or {}).items()
            )
        ]

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        if self.objects.pop((api_version, kind, namespace, name), None) is not None:
            self.actions.append(f"delete {kind}/{name}")

    def patch(
        self, api_version: str, kind: str, namespace: str, name: str, body: Mapping[str, Any]
    ) -> Obj:
        obj = self.objects[(api_version, kind, namespace, name)]
        _merge(obj, body)
        self.actions.append(f"patch {kind}/{name}")
        return copy.deepcopy(obj)

    def patch_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> Obj:
        key = next(k for k in self.objects if k[1:] == (kind, namespace, name))
        obj = self.objects[key]
        obj.setdefault("status", {})
        _merge(obj["status"], status)
        self.actions.append(f"status {kind}/{name}")
        return copy.deepcopy(obj)
