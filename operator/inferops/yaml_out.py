"""The one YAML writer of the CLI: plain YAML that every reader takes exactly as written.

PyYAML resolves plain scalars by YAML 1.1 and quotes a string only when *its own* reader
would take it for something else. kubectl (sigs.k8s.io/yaml over go-yaml) and other YAML
1.2 readers resolve more: `0037191215162e10` (a config hash) is a string to PyYAML but the
float 3.7191215162e+20 to kubectl, and so are `1e3`, `0o17`, `09` or `y`. This writer
quotes every string that a YAML 1.2 core-schema reader, a YAML 1.1 reader or go-yaml could
resolve to a null, bool, int or float, and never writes anchors or aliases (`&id001`,
`*id001`): each object is written out in full, as kubectl users expect to read it.

A leaf module: it imports nothing of inferops, so every layer may use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

_DIGITS = list("0123456789")
_SIGNS = ["-", "+"]

# Plain scalars that some reader resolves to a non-string, beyond what PyYAML's own
# (YAML 1.1) resolver already knows. Each is matched against the whole scalar.
_EXTRA_RESOLVERS: list[tuple[str, str, list[str]]] = [
    # YAML 1.1 booleans PyYAML leaves out; go-yaml v2 (kubectl) reads them as bools.
    ("tag:yaml.org,2002:bool", r"^(?:y|Y|n|N)$", list("yYnN")),
    # YAML 1.2 core ints (leading zeros allowed: `09`), and go's ParseInt(s, 0, 64) after
    # go-yaml drops underscores: 0x / 0o / 0b prefixes in either case.
    ("tag:yaml.org,2002:int", r"^[-+]?[0-9][0-9_]*$", _DIGITS + _SIGNS),
    ("tag:yaml.org,2002:int", r"^[-+]?0[xX][0-9a-fA-F_]+$", ["0", *_SIGNS]),
    ("tag:yaml.org,2002:int", r"^[-+]?0[oO][0-7_]+$", ["0", *_SIGNS]),
    ("tag:yaml.org,2002:int", r"^[-+]?0[bB][01_]+$", ["0", *_SIGNS]),
    # YAML 1.2 core floats, exponent without a dot included (`1e3`, `0037191215162e10`),
    # and the same with underscores (go-yaml drops them before parsing).
    (
        "tag:yaml.org,2002:float",
        r"^[-+]?(?:\.[0-9_]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9_]+)?$",
        [*_DIGITS, *_SIGNS, "."],
    ),
    ("tag:yaml.org,2002:float", r"^[-+]?\.(?:inf|Inf|INF)$", [*_SIGNS, "."]),
    ("tag:yaml.org,2002:float", r"^\.(?:nan|NaN|NAN)$", ["."]),
]


class PlainDumper(yaml.SafeDumper):
    """SafeDumper that writes no aliases and quotes every string a reader could retype."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


for _tag, _pattern, _first in _EXTRA_RESOLVERS:
    # Registered after PyYAML's own resolvers, so ints and floats that Python values
    # represent as are still written plain; only strings get quoted by them.
    PlainDumper.add_implicit_resolver(_tag, re.compile(_pattern), _first)


def dump(data: Any) -> str:
    """One YAML document (no `---`), keys in their given order."""
    return yaml.dump(data, Dumper=PlainDumper, sort_keys=False, width=100)


def dump_all(documents: Iterable[Any]) -> str:
    """A multi-document YAML stream, documents separated by `---`."""
    return yaml.dump_all(documents, Dumper=PlainDumper, sort_keys=False, width=100)
