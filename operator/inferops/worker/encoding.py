"""Request bodies as bytes straight from CSV rows, for the batch worker.

The body of a row is the mapping's JSON with the row's values at its leaves. Building a
dict per row and running the JSON encoder over it cost the worker more than the rest of
its per-row work together (measured with bench/batch_bench.py), so the JSON text is
rendered once with a hole per leaf and each row only fills the holes. A row too short for
every leaf leaves some out and changes the body's shape: such rows take the general path.
Both paths give the same bytes; the unit tests compare them over a table and random cases.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii
from operator import itemgetter
from typing import Any

from inferops.contract.request_schema import JsonObject
from inferops.worker.mapping import compile_mapping, compile_parts, leaf_part

RowEncoder = Callable[[Sequence[str]], bytes]
COMPACT = json.JSONEncoder(separators=(",", ":"))  # json.dumps would build one per call
# A hole as the JSON encoder writes it: the marker string "\x00<n>\x00", quoted and escaped.
_HOLE = re.compile(r'"\\u0000(\d+)\\u0000"')


class _Hole:
    """A leaf in the probe body: stands for column `index` as a `kind`."""

    __slots__ = ("index", "kind")

    def __init__(self, index: int, kind: str) -> None:
        self.index = index
        self.kind = kind


def _bool_text(value: Any) -> str:
    return "true" if value else "false"


def _value_text(kind: str) -> Callable[[Any], str]:
    """How the JSON encoder writes a leaf value of this kind (see mapping.coerce)."""
    if kind == "string":
        return encode_basestring_ascii
    if kind == "boolean":
        return _bool_text
    return repr  # int and float: what JSONEncoder writes for finite numbers


def _decimal_text(cell: str) -> str:
    """A number cell with a "." as JSON (what mapping.leaf_part makes of it, written as
    the JSON encoder writes a float); ValueError for any other cell."""
    if "." in cell:
        number = float(cell)
        if number - number == 0.0:  # finite
            return repr(number)
    raise ValueError(cell)


def _cells(indexes: list[int]) -> Callable[[Sequence[str]], Sequence[str]]:
    if len(indexes) == 1:
        index = indexes[0]
        return lambda row: (row[index],)
    return itemgetter(*indexes)


def _fast_fill(holes: list[_Hole]) -> Callable[[Sequence[str]], tuple[str, ...]] | None:
    """The hole texts of a row with no call per leaf beyond the cell's own conversion, when
    every leaf is a number or a string; ValueError sends a row to the general path."""
    kinds = {hole.kind for hole in holes}
    if not kinds <= {"number", "string"}:
        return None
    cells = _cells([hole.index for hole in holes])
    if kinds == {"number"}:
        return lambda row: tuple(map(_decimal_text, cells(row)))
    shows = [_decimal_text if hole.kind == "number" else encode_basestring_ascii for hole in holes]
    return lambda row: tuple(map(_call, shows, cells(row)))


def _call(show: Callable[[str], str], cell: str) -> str:
    return show(cell)


def _holes(mapping: JsonObject) -> tuple[str, list[str], list[_Hole]] | None:
    """The body's JSON with a hole per leaf: (text, the static pieces between holes, the
    holes in order); None when the body cannot be templated that way."""
    probe = compile_parts(mapping, lambda index, kind: lambda row: _Hole(index, kind))([])
    if not isinstance(probe, dict):  # a body of {}, which still checks its leaves: rare
        return None
    holes: list[_Hole] = []

    def mark(hole: Any) -> str:
        if not isinstance(hole, _Hole):
            raise TypeError(f"unexpected {type(hole).__name__} in a mapping")
        holes.append(hole)
        return f"\x00{len(holes) - 1}\x00"

    text = json.JSONEncoder(separators=(",", ":"), default=mark).encode(probe)
    pieces = _HOLE.split(text)
    statics, order = pieces[0::2], [int(n) for n in pieces[1::2]]
    if order != list(range(len(holes))):  # a property name that looks like a hole
        return None
    return text, statics, holes


def compile_encoder(mapping: JsonObject) -> RowEncoder:
    """Row -> the compact JSON bytes of `compile_mapping(mapping)(row)`, or RowError."""
    build = compile_mapping(mapping)

    def general(row: Sequence[str]) -> bytes:
        return COMPACT.encode(build(row)).encode()

    found = _holes(mapping)
    if found is None:
        return general
    text, statics, holes = found
    if not holes:
        constant = text.encode()
        return lambda row: constant
    template = "%s".join(piece.replace("%", "%%") for piece in statics)
    fills = [(leaf_part(h.index, h.kind), _value_text(h.kind)) for h in holes]
    shortest = max(h.index for h in holes) + 1
    fast = _fast_fill(holes)

    def encode(row: Sequence[str]) -> bytes:
        if len(row) < shortest:
            return general(row)
        return (template % tuple([show(leaf(row)) for leaf, show in fills])).encode()

    if fast is None:
        return encode

    def encode_fast(row: Sequence[str]) -> bytes:
        if len(row) >= shortest:
            try:
                return (template % fast(row)).encode()
            except ValueError:  # not a plain decimal: the general path, and its message
                pass
        return encode(row)

    return encode_fast
