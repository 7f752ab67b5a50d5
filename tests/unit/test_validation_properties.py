"""Property tests: validation reports, it never raises, whatever it is given."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from inferops.validation import ValidationContext, known_application, validate_object
from tests.unit.rules_table import APPS, ROWS, bs, rts

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)
KNOWN_KEYS = [
    "spec",
    "versions",
    "trafficRatio",
    "application",
    "version",
    "websocket",
    "multiPoolLoadBalancing",
    "pools",
    "enabled",
    "env",
    "valueFrom",
    "mapping",
    "computeNodes",
    "apis",
    "request",
    "data",
    "type",
    "properties",
    "items",
]
CTX = ValidationContext(
    applications={
        ("default", a["metadata"]["name"]): k for a in APPS if (k := known_application(a))
    }
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_values(value: Any) -> None:
    assert isinstance(validate_object(value, CTX), list)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["AIApplication", "RealTimeService", "BatchService"]), json_values, json_values
)
def test_arbitrary_specs_of_known_kinds(kind: str, spec: Any, metadata: Any) -> None:
    obj = {
        "apiVersion": "serving.inferops.dev/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    }
    problems = validate_object(obj, CTX)
    assert all(p.kind == kind for p in problems)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


base_objects = st.sampled_from([r.obj for r in ROWS] + [rts(), bs()])


@settings(max_examples=400, deadline=None)
@given(base_objects, st.data(), json_values)
def test_one_field_replaced_by_anything(
    base: dict[str, Any], data: st.DataObject, replacement: Any
) -> None:
    """Near-valid objects with one field swapped for arbitrary JSON still only report."""
    obj = copy.deepcopy(base)
    path = data.draw(st.sampled_from(_paths(obj)[1:]))
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = replacement
    old = copy.deepcopy(base) if data.draw(st.booleans()) else None
    ctx = ValidationContext(applications=CTX.applications, old=old)
    for problem in validate_object(obj, ctx):
        assert problem.path and problem.message


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(KNOWN_KEYS), json_values, max_size=6))
def test_apps_from_arbitrary_specs(spec: dict[str, Any]) -> None:
    obj = {"kind": "AIApplication", "metadata": {"name": "x"}, "spec": spec}
    known_application(obj)
    validate_object(obj)
