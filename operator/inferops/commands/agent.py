"""`inferops agent`: the data-collection proxy's subcommand.

Registering reads only the flag table of `inferops.contract.agent`; the proxy (aiohttp,
storage) is imported when the command runs, so other subcommands start without it.
"""

from __future__ import annotations

import argparse
from typing import Any

from inferops.contract.agent import COMMAND, add_agent_arguments


def cmd_agent(args: argparse.Namespace) -> int:
    from inferops.runtime.agent.command import cmd_agent as run

    return run(args)


def register(subparsers: Any) -> None:
    """Registers `agent` on the `inferops` subparsers (`inferops.commands.Command`)."""
    agent = subparsers.add_parser(
        COMMAND, help="data collection proxy: forwards to the model, records sampled pairs"
    )
    add_agent_arguments(agent)
    agent.set_defaults(func=cmd_agent)
