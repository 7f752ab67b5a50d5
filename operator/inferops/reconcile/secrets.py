"""What the cluster says about the Secrets an object names: listed by its Namespace,
labelled usable, or not (the rule is in inferops.validation.secrets).

Used by the reconcilers and the webhook alike. Only metadata is read (PartialObjectMetadata),
and only for the names the object refers to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inferops.reconcile.kube import Cluster, KubeError
from inferops.validation.references import ApplicationIndex, namespace_of
from inferops.validation.secrets import (
    LISTED,
    UNREADABLE,
    listed_secrets,
    secret_names,
    secret_references,
    secret_state,
)


def secret_states(
    kube: Cluster, obj: Mapping[str, Any], apps: ApplicationIndex | None
) -> dict[str, str]:
    """name -> state, for every Secret the object's pods would get."""
    names = secret_names(secret_references(obj, apps))
    if not names:
        return {}
    namespace = namespace_of(obj)
    ns_obj = kube.get("v1", "Namespace", None, namespace) or {}
    listed = listed_secrets((ns_obj.get("metadata") or {}).get("annotations"))
    states: dict[str, str] = {}
    for name in names:
        if name in listed:
            states[name] = LISTED
            continue
        try:
            found = kube.get_metadata("v1", "Secret", namespace, name)
        except KubeError as exc:
            if exc.status != 403:
                raise
            states[name] = UNREADABLE
            continue
        states[name] = secret_state((found or {}).get("metadata") if found else None)
    return states
