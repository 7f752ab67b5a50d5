"""`inferops router-agent`: the program beside nginx in every router pod.

Registering imports nothing of it; aiohttp, Prometheus and storage load when it runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from inferops.contract.router import COMMAND, CONFIG_FILE


def cmd_router_agent(args: argparse.Namespace) -> int:
    from inferops.runtime.router.command import cmd_router_agent as run

    return run(args)


def register(subparsers: Any) -> None:
    """Registers `router-agent` on the `inferops` subparsers (`inferops.commands.Command`)."""
    parser = subparsers.add_parser(
        COMMAND,
        help="beside the router's nginx: per-version metrics, shadow relay, paired capture",
    )
    parser.add_argument(
        "--config",
        required=True,
        help=f"the agent's configuration ({CONFIG_FILE} of the router's ConfigMap)",
    )
    parser.set_defaults(func=cmd_router_agent)
