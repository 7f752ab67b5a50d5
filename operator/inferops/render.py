"""`inferops render`: the child objects the operator would apply, like `helm template`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inferops.api.catalog import Catalog
from inferops.api.names import KIND_REALTIME
from inferops.api.realtime import RealTimeServiceSpec
from inferops.manifests import Document
from inferops.resources.realtime import Inputs, realtime_children
from inferops.validation import Problem, ValidationContext, validate_object
from inferops.validation.references import index_applications, namespace_of

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"


def _without_owner(obj: dict[str, Any]) -> dict[str, Any]:
    # The API server assigns the owner's uid; the operator sets ownerReferences itself.
    obj["metadata"].pop("ownerReferences", None)
    return obj


def render(
    documents: Sequence[Document], catalog: Catalog
) -> tuple[list[dict[str, Any]], list[Problem]]:
    """(children of every service in the documents, problems that prevented rendering)."""
    apps = index_applications(doc.obj for doc in documents)
    ctx = ValidationContext(catalog=catalog, applications=apps)
    children: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for doc in documents:
        if doc.obj.get("kind") != KIND_REALTIME:
            continue
        found = validate_object(doc.obj, ctx)
        if found:
            problems += found
            continue
        namespace = namespace_of(doc.obj)
        obj = {
            **doc.obj,
            "metadata": {**doc.obj["metadata"], "namespace": namespace, "uid": PLACEHOLDER_UID},
        }
        spec = RealTimeServiceSpec.model_validate(obj["spec"])
        versions = {
            (e.application, e.version): apps[(namespace, e.application)].versions[e.version].spec
            for e in spec.versions
        }
        children += [
            _without_owner(c) for c in realtime_children(Inputs(obj, spec, versions, catalog))
        ]
    return children, problems
