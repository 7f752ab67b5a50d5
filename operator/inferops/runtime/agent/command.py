"""`inferops agent`: starts the proxy with the options of its command line.

The flags live in `inferops.contract.agent`, next to the argv the operator writes into
collecting pods, so the two cannot drift; `inferops.commands.agent` binds them to the
`agent` subcommand, and this module runs the server.
"""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from inferops.contract.agent import options_from_args
from inferops.runtime.agent.proxy import build_app
from inferops.storage import StorageError

log = logging.getLogger(__name__)


def cmd_agent(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    options = options_from_args(args)
    try:
        app = build_app(options)
    except StorageError as exc:
        print(f"inferops agent: {exc}", file=sys.stderr)
        return 2
    log.info(
        "data collection agent on %s:%d -> %s, sample ratio %g, writing to %s",
        options.host,
        options.port,
        options.upstream,
        options.sample_ratio,
        options.output,
    )
    # SIGTERM/SIGINT: stop listening, let in-flight requests finish, flush, return (exit 0).
    web.run_app(
        app,
        host=options.host,
        port=options.port,
        access_log=None,
        print=None,
        shutdown_timeout=10.0,
    )
    return 0
