"""`inferops model-server` and `inferops fetch-model`: the reference model runtime and the
init container of `modelUri` (`inferops.runtime`, imported when they run)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from inferops.commands.common import EXIT_INVALID, fail
from inferops.contract import fetch_model as fetch_model_contract


def cmd_model_server(args: argparse.Namespace) -> int:
    from inferops.runtime.model_server import serve
    from inferops.runtime.models import ModelError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not 0 <= args.fail_percent <= 100:
        return fail(f"--fail-percent must be between 0 and 100, got {args.fail_percent:g}")
    try:
        serve(Path(args.model), args.host, args.port, args.max_body_bytes, args.fail_percent)
    except ModelError as exc:
        return fail(str(exc))
    return 0


def cmd_fetch_model(args: argparse.Namespace) -> int:
    from inferops.runtime.fetch_model import fetch_model
    from inferops.storage import StorageError

    options = fetch_model_contract.options_from_args(args)
    try:
        written = fetch_model(options.source, Path(options.dest), options.endpoint, options.region)
    except StorageError as exc:
        return fail(str(exc), EXIT_INVALID)
    for path in written:
        print(path)
    return 0


def register(subparsers: Any) -> None:
    """Registers `model-server` and `fetch-model` on the `inferops` subparsers."""
    server = subparsers.add_parser(
        "model-server", help="serve a model directory (reference runtime)"
    )
    server.add_argument(
        "--model", required=True, metavar="DIR", help="directory with config.json and model.json"
    )
    server.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    server.add_argument("--host", default="0.0.0.0", help="address (default 0.0.0.0)")
    server.add_argument(
        "--max-body-bytes",
        type=int,
        default=16 * 1024 * 1024,
        help="largest request body (default 16 MiB)",
    )
    server.add_argument(
        "--fail-percent",
        type=float,
        default=0.0,
        metavar="P",
        help="answer P%% of the API requests 500, on purpose (a bad version, to rehearse "
        "a rollout's rollback; default 0)",
    )
    server.set_defaults(func=cmd_model_server)

    fetch = subparsers.add_parser(
        fetch_model_contract.COMMAND, help="copy model files into /mnt/models"
    )
    fetch_model_contract.add_fetch_model_arguments(fetch)
    fetch.set_defaults(func=cmd_fetch_model)
