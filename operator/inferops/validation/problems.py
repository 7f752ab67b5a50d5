"""A validation problem, and turning pydantic errors into problems with field paths."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one object, at one field."""

    kind: str
    name: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}: {self.path}: {self.message}"


def join_path(parts: Iterable[str | int]) -> str:
    """('spec', 'versions', 0, 'trafficRatio') -> 'spec.versions[0].trafficRatio'."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bound = {
            "greater_than_equal": ">=",
            "less_than_equal": "<=",
            "greater_than": ">",
            "less_than": "<",
        }[kind]
        return f"must be {bound} {ctx.get(_ctx_key(kind))}, got {error['input']!r}"
    if kind == "string_pattern_mismatch":
        return f"{_without_userinfo(error['input'])!r} does not match {ctx.get('pattern')}"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} items"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return f"must be at least {ctx.get('min_length')} characters"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {error['input']!r}"
    text = error["msg"]
    if kind.endswith("_type"):
        text = f"{text[0].lower()}{text[1:]}, got {type(error['input']).__name__}"
    return text[0].lower() + text[1:] if text else kind


# user:password@ after a scheme: a refused URL is quoted back without it.
USERINFO = re.compile(r"(?<=://)[^/?#@\s]*@")


def _without_userinfo(value: Any) -> Any:
    return USERINFO.sub("***@", value) if isinstance(value, str) else value


def _ctx_key(kind: str) -> str:
    return {
        "greater_than_equal": "ge",
        "less_than_equal": "le",
        "greater_than": "gt",
        "less_than": "lt",
    }[kind]


def from_validation_error(
    kind: str, name: str, prefix: Sequence[str | int], error: ValidationError
) -> list[Problem]:
    """One problem per pydantic error, with the path as the API spells it."""
    problems = []
    for detail in error.errors():
        # pydantic appends the tag of union members ("str", "int") to loc; drop them.
        loc = [p for p in detail["loc"] if not (isinstance(p, str) and p in {"str", "int"})]
        problems.append(Problem(kind, name, join_path([*prefix, *loc]), _message(detail)))
    return problems
