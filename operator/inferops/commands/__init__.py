"""The subcommands of `inferops`, one registration shape for all.

A command module has `register(subparsers)`: it adds its subcommand(s) to the `inferops`
parser, each with `func` set to the function that runs it and returns the exit code.
`inferops.cli` walks one list of such modules. The operator's commands live here
(`operator`, `manifests`: crds, validate and render, `mapping`, `demo`, `runtime`:
model-server and fetch-model); the data-plane programs that own a package register
themselves in the same shape (`inferops.worker.commands`: batch-worker and batch run;
`inferops.commands.agent` binds the agent).

Registering imports little: what a command runs is imported when it runs, so
`inferops validate` does not load Kopf.
"""

from __future__ import annotations

from typing import Any, Protocol


class Command(Protocol):
    """A module (or object) that adds its subcommands to the `inferops` subparsers."""

    def register(self, subparsers: Any) -> None: ...
