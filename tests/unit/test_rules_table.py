"""Every row of the validation table, through the Python validation and through the CRD.

The Python validation is what the CLI, webhook and handlers run; the CRD side is the
generated openAPIV3Schema and CEL rules evaluated offline (crd_eval). A row refused by one
and accepted by the other is a disagreement between the two sources of truth.
"""

from __future__ import annotations

import pytest

from inferops.api.crd import all_crds
from inferops.api.kinds import ALL_KINDS
from inferops.validation import ValidationContext, known_application, validate_object
from inferops.validation.references import namespace_of
from tests.unit.crd_eval import schema_errors
from tests.unit.rules_table import APPS, ROWS, Row

SCHEMAS = {
    crd["spec"]["names"]["kind"]: crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for crd in all_crds().values()
}
APP_INDEX = {
    (namespace_of(a), a["metadata"]["name"]): known
    for a in APPS
    if (known := known_application(a)) is not None
}


def python_problems(row: Row) -> list[tuple[str, str]]:
    ctx = ValidationContext(applications=APP_INDEX, old=row.old)
    return [(p.path, p.message) for p in validate_object(row.obj, ctx)]


def test_table_covers_every_kind_and_layer() -> None:
    assert {r.obj["kind"] for r in ROWS} == set(ALL_KINDS)
    assert {r.layer for r in ROWS} == {"schema", "catalog", "reference", "cluster"}
    assert len({r.id for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_python_validation(row: Row) -> None:
    found = python_problems(row)
    assert sorted({p for p, _ in found}) == sorted({p for p, _ in row.expected}), found
    for path, fragment in row.expected:
        messages = [m for p, m in found if p == path]
        assert any(fragment in m for m in messages), (path, fragment, messages)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_crd_schema_and_cel(row: Row) -> None:
    errors = schema_errors(SCHEMAS[row.obj["kind"]], row.obj, row.old)
    if row.layer != "schema":
        assert errors == [], "the CRD must accept what only the catalog or an app can refuse"
        return
    assert sorted({p for p, _ in errors}) == sorted({p for p, _ in row.expected}), errors


CEL_ROWS = [r for r in ROWS if r.layer == "schema" and r.expected]


@pytest.mark.parametrize("row", CEL_ROWS, ids=[r.id for r in CEL_ROWS])
def test_cel_messages_match_python_messages(row: Row) -> None:
    """Where a CEL rule refuses a row, it says what the Python validation says."""
    errors = dict(schema_errors(SCHEMAS[row.obj["kind"]], row.obj, row.old))
    python = dict(python_problems(row))
    for path, _ in row.expected:
        cel_message = errors[path]
        if cel_message in python.values():
            continue
        # Not a CEL rule: an OpenAPI bound or pattern, worded by each validator its own way.
        assert (
            "does not match" in cel_message
            or "is " in cel_message
            or "required" in cel_message
            or "unknown field" in cel_message
            or "non-empty" in cel_message
            or "should be" in cel_message
            or "too" in cel_message
        ), cel_message
