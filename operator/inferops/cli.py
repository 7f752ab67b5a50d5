"""The `inferops` command: one parser, its subcommands registered by their modules.

Every module in `COMMANDS` has `register(subparsers)` (`inferops.commands.Command`); the
order of the list is the order of `inferops --help`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from inferops.commands import (
    Command,
    agent,
    demo,
    manifests,
    mapping,
    operator,
    router_agent,
    runtime,
)
from inferops.worker import commands as batch

COMMANDS: tuple[Command, ...] = (
    operator,
    manifests,
    mapping,
    demo,
    runtime,
    batch,
    agent,
    router_agent,
)

__all__ = ["COMMANDS", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inferops", description="Machine-learning models as Kubernetes custom resources."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
