"""`inferops demo`: the no-cluster tour (`inferops.demo`, imported when it runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_demo(args: argparse.Namespace) -> int:
    from inferops.demo import run_demo

    return run_demo(Path(args.output_dir) if args.output_dir else None)


def register(subparsers: Any) -> None:
    """Registers `demo` on the `inferops` subparsers."""
    demo = subparsers.add_parser("demo", help="the no-cluster tour: model servers, router, batch")
    demo.add_argument("--output-dir", help="keep the demo's outputs here (default: a temp dir)")
    demo.set_defaults(func=cmd_demo)
