"""Prints which top-level parts of `inferops` import which (the package-level import graph).

    .venv/bin/python tools/import_graph.py            # this checkout
    git worktree add /tmp/old <commit>
    PYTHONPATH=/tmp/old/operator .venv/bin/python tools/import_graph.py   # another one

Lines marked `!` are imports the layers in .importlinter forbid (`make lint` fails on them).
"""

from __future__ import annotations

import sys
from collections import defaultdict

import grimp

# Higher numbers may import lower ones; parts at the same rank may not import each other.
RANK = {
    "cli": 7,
    "commands": 6,
    "demo": 5,
    "render": 5,
    "handlers": 5,
    "reconcile": 4,
    "validation": 3,
    "resources": 3,
    "contract": 2,
    "api": 1,
}
DATA_PLANE = {"worker", "runtime", "storage"}
OPERATOR = {
    "handlers",
    "reconcile",
    "validation",
    "resources",
    "cli",
    "commands",
    "demo",
    "render",
}
# The operator meets the data plane only in the contract; the CLI and the demo run both.
REACHES_DATA_PLANE = {"cli", "commands", "demo"}


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "(root)"


def forbidden(source: str, target: str) -> bool:
    if source in DATA_PLANE and target in OPERATOR:
        return True
    if source in OPERATOR - REACHES_DATA_PLANE and target in DATA_PLANE:
        return True
    if {source, target} == {"worker", "runtime"}:
        return True
    if source in RANK and target in RANK:
        return RANK[target] >= RANK[source]
    return False


def main() -> int:
    graph = grimp.build_graph("inferops")
    edges: dict[str, set[str]] = defaultdict(set)
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            source, target = part(module), part(imported)
            if source != target:
                edges[source].add(target)
    broken = 0
    for source in sorted(edges):
        for target in sorted(edges[source]):
            bad = forbidden(source, target)
            broken += bad
            print(f"{'!' if bad else ' '} {source} -> {target}")
    print(f"{broken} forbidden edge(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
