"""`inferops mapping`: the CSV mapping generated from an app's request schema."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from inferops.commands.common import EXIT_INVALID, fail
from inferops.contract.request_schema import generate_mapping, request_schema, select_api


def cmd_mapping(args: argparse.Namespace) -> int:
    try:
        config = json.loads(Path(args.config).read_text(encoding="utf-8"))
    except OSError as exc:
        return fail(f"{args.config}: cannot read: {exc.strerror}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return fail(f"{args.config}: invalid JSON: {exc}")
    try:
        api = select_api(config, args.api)
    except LookupError as exc:
        return fail(f"{args.config}: {exc}", EXIT_INVALID)
    print(json.dumps(generate_mapping(request_schema(api)), indent=4))
    return 0


def register(subparsers: Any) -> None:
    """Registers `mapping` on the `inferops` subparsers."""
    mapping = subparsers.add_parser(
        "mapping", help="print the CSV mapping of an app's request schema"
    )
    mapping.add_argument("config", metavar="CONFIG.json", help="the app's config.json")
    mapping.add_argument("--api", metavar="URL", help="the API url (default: the first API)")
    mapping.set_defaults(func=cmd_mapping)
