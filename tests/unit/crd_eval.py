"""An offline stand-in for the API server's schema checks, used to prove agreement.

It does what kube-apiserver does with a CRD's openAPIV3Schema, in order: apply defaults,
refuse unknown fields (kubectl's default strict field validation), check the OpenAPI
constraints, and evaluate every CEL rule (cel-python, with Kubernetes' list `sum()` and `isSorted()`).
The cluster tests then check the real API server against the same table.
"""

from __future__ import annotations

import copy
import itertools
import re
from typing import Any

import celpy
import jsonschema
from celpy import celtypes

from inferops.validation.problems import join_path

Error = tuple[str, str]
_ENV = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def _k8s_sum(values: Any) -> Any:
    total: Any = celtypes.IntType(0)
    first = True
    for value in values:
        total = value if first else total + value
        first = False
    return total


def _k8s_is_sorted(values: Any) -> Any:
    items = list(values)
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))


def _program(rule: str) -> Any:
    if rule not in _PROGRAMS:
        functions = {"sum": _k8s_sum, "isSorted": _k8s_is_sorted}
        _PROGRAMS[rule] = _ENV.program(_ENV.compile(rule), functions=functions)
    return _PROGRAMS[rule]


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    value = copy.deepcopy(value)
    _default(schema, value)
    return value


def _default(schema: dict[str, Any], value: Any) -> None:
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                _default(child, value[name])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _default(schema["items"], item)


def unknown_fields(schema: dict[str, Any], value: Any, path: list[str | int]) -> list[Error]:
    errors: list[Error] = []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return errors
    if isinstance(value, dict) and "properties" in schema:
        for name, child in value.items():
            if not path and name == "metadata":
                continue  # ObjectMeta is validated by the API server itself
            sub = schema["properties"].get(name)
            if sub is None:
                errors.append((join_path([*path, name]), "unknown field"))
            elif sub is not None:
                errors += unknown_fields(sub, child, [*path, name])
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += unknown_fields(schema["items"], item, [*path, i])
    return errors


def openapi_errors(schema: dict[str, Any], value: Any) -> list[Error]:
    validator = jsonschema.Draft7Validator(schema)
    errors = []
    for error in validator.iter_errors(value):
        path = list(error.absolute_path)
        missing = re.match(r"'(.+)' is a required property", error.message)
        if error.validator == "required" and missing:
            path.append(missing.group(1))  # the API server names the missing field itself
        errors.append((join_path(path), error.message))
    return errors


def cel_errors(
    schema: dict[str, Any], value: Any, old: Any = None, path: list[str | int] | None = None
) -> list[Error]:
    path = path or []
    errors: list[Error] = []
    for rule in schema.get("x-kubernetes-validations", []):
        transition = re.search(r"\boldSelf\b", rule["rule"]) is not None
        if transition and old is None:
            continue  # transition rules only run on update, when the old value exists
        activation = {"self": value, **({"oldSelf": old} if transition else {})}
        program = _program(rule["rule"])
        result = program.evaluate(celpy.json_to_cel(activation))
        if result is not celtypes.BoolType(True) and result != celtypes.BoolType(True):
            if "messageExpression" in rule:
                message = str(
                    _program(rule["messageExpression"]).evaluate(celpy.json_to_cel({"self": value}))
                )
            else:
                message = rule.get("message", f"failed rule: {rule['rule']}")
            field = rule.get("fieldPath", "").lstrip(".")
            errors.append((join_path([*path, *field.split(".")] if field else path), message))
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name in value:
                old_child = old.get(name) if isinstance(old, dict) else None
                errors += cel_errors(child, value[name], old_child, [*path, name])
    elif isinstance(value, list) and "items" in schema:
        # Kubernetes correlates list items for transition rules only in map-type lists.
        for i, item in enumerate(value):
            errors += cel_errors(schema["items"], item, None, [*path, i])
    return errors


def schema_errors(schema: dict[str, Any], obj: Any, old: Any = None) -> list[Error]:
    """What the API server would refuse, as (path, message)."""
    obj = apply_defaults(schema, obj)
    old = apply_defaults(schema, old) if old is not None else None
    errors = unknown_fields(schema, obj, []) + openapi_errors(schema, obj)
    if errors:
        return errors
    return cel_errors(schema, obj, old)
