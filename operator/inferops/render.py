"""`inferops render`: the child objects the operator would apply, like `helm template`.

The children come from `desired_state`, the function reconcile applies, for every
RealTimeService and BatchService among the documents; `render_text` writes them with the
CLI's YAML writer, so kubectl reads every value as the string or number it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inferops.api.catalog import Catalog
from inferops.api.names import KIND_BATCH, KIND_REALTIME
from inferops.manifests import Document
from inferops.resources.desired import desired_state, parse_service
from inferops.validation import Problem, ValidationContext, validate_object
from inferops.validation.references import index_applications, namespace_of, version_specs
from inferops.yaml_out import dump_all

# The API server assigns the uid; a BatchService's task ID (in its Job) derives from it.
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
SERVICE_KINDS = (KIND_REALTIME, KIND_BATCH)


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
        if doc.obj.get("kind") not in SERVICE_KINDS:
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
        service = parse_service(obj, version_specs(apps, namespace))
        children += [_without_owner(c) for c in desired_state(service, catalog)]
    return children, problems


def render_text(children: Sequence[dict[str, Any]]) -> str:
    """The children as one multi-document YAML stream, as `inferops render` prints it."""
    return dump_all(children)
