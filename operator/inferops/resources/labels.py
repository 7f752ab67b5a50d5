"""Labels and owner references every child carries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inferops.api.names import (
    API_VERSION,
    LABEL_APPLICATION,
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    LABEL_POOL,
    LABEL_VERSION,
)

MANAGED_BY = "inferops"
LABEL_COMPONENT = "app.kubernetes.io/component"


class OwnerInputs:
    """Builder inputs about one owner object: its name and namespace come from `obj`."""

    obj: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])


def owner_labels(kind: str, name: str) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_OWNER_KIND: kind, LABEL_OWNER_NAME: name}


def version_labels(
    kind: str, name: str, application: str, version: str, pool: str | None = None
) -> dict[str, str]:
    labels = {
        **owner_labels(kind, name),
        LABEL_APPLICATION: application,
        LABEL_VERSION: version,
        LABEL_COMPONENT: "model",
    }
    if pool is not None:
        labels[LABEL_POOL] = pool
    return labels


def version_of(obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(application, version) of a model child, from its version_labels; (None, None) for
    the router and anything unlabelled."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL_APPLICATION), labels.get(LABEL_VERSION)


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """A controller reference to the custom resource, so deleting it collects the child."""
    return {
        "apiVersion": owner.get("apiVersion", API_VERSION),
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    owner: Mapping[str, Any],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels),
        "ownerReferences": [owner_reference(owner)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta
