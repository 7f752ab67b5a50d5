#!/usr/bin/env python3
"""Prints an argocd-cm patch with the Inferops health check (from docs/argocd-health.md).

python docs/argocd_cm.py > /tmp/argocd-cm-patch.yaml
kubectl -n argocd patch configmap argocd-cm --patch-file /tmp/argocd-cm-patch.yaml
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

DOC = Path(__file__).resolve().parent / "argocd-health.md"
GROUP = "serving.inferops.dev"
KINDS = ("AIApplication", "RealTimeService", "BatchService")


def health_lua() -> str:
    """The one ```lua block of docs/argocd-health.md."""
    blocks = re.findall(r"^```lua\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.S | re.M)
    if len(blocks) != 1:
        raise SystemExit(f"{DOC}: expected exactly one lua block, found {len(blocks)}")
    return str(blocks[0])


def patch() -> dict[str, object]:
    script = health_lua()
    keys = {f"resource.customizations.health.{GROUP}_{kind}": script for kind in KINDS}
    return {"data": keys}


class _Literal(str):
    pass


def _literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


def main() -> int:
    yaml.add_representer(_Literal, _literal, Dumper=yaml.SafeDumper)
    data = {k: _Literal(v) for k, v in patch()["data"].items()}  # type: ignore[attr-defined]
    sys.stdout.write(yaml.safe_dump({"data": data}, sort_keys=False, width=200))
    return 0


if __name__ == "__main__":
    sys.exit(main())
