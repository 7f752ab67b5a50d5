"""One way to register subcommands: every command module has `register(subparsers)`."""

from __future__ import annotations

import argparse
from types import ModuleType

from inferops.cli import COMMANDS, build_parser

NAMES = [
    "operator",
    "crds",
    "validate",
    "render",
    "mapping",
    "demo",
    "model-server",
    "fetch-model",
    "batch-worker",
    "batch",
    "agent",
    "router-agent",
]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_module_registers_the_same_way() -> None:
    assert all(isinstance(c, ModuleType) and callable(c.register) for c in COMMANDS)
    added: list[str] = []
    for command in COMMANDS:
        parser = argparse.ArgumentParser(prog="inferops")
        command.register(parser.add_subparsers(dest="command", required=True))
        names = list(_subcommands(parser))
        assert names, command
        added += names
    assert added == NAMES


def test_the_parser_has_every_command_in_order_each_with_its_function() -> None:
    commands = _subcommands(build_parser())
    assert list(commands) == NAMES
    for name, parser in commands.items():
        if name != "batch":
            assert callable(parser.get_default("func")), name
    assert callable(_subcommands(commands["batch"])["run"].get_default("func"))
