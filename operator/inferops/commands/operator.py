"""`inferops operator`: runs the Kopf operator (Kopf is imported only when it runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from inferops.api.catalog import CatalogError, load_catalog
from inferops.commands.common import fail


def cmd_operator(args: argparse.Namespace) -> int:
    from inferops.handlers.run import WebhookOptions, run_operator

    try:
        catalog = load_catalog(args.catalog)
    except CatalogError as exc:
        return fail(str(exc))
    webhook = None
    if args.webhook_port:
        webhook = WebhookOptions(
            port=args.webhook_port,
            address=args.webhook_address,
            host=args.webhook_host,
            cert_dir=Path(args.webhook_cert_dir) if args.webhook_cert_dir else None,
            managed=args.webhook_managed,
        )
    run_operator(
        catalog,
        namespaces=args.namespace,
        peering=args.peering,
        liveness=args.liveness,
        verbose=args.verbose,
        webhook=webhook,
        metrics_port=args.metrics_port or None,
    )
    return 0


def register(subparsers: Any) -> None:
    """Registers `operator` on the `inferops` subparsers."""
    operator = subparsers.add_parser("operator", help="run the Kopf operator")
    operator.add_argument("--catalog", help="catalog YAML (default: the built-in catalog)")
    operator.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeatable; default: all)",
    )
    operator.add_argument(
        "--peering", metavar="NAME", help="Kopf peering object for HA (default: standalone)"
    )
    operator.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        help="liveness endpoint URL (default http://0.0.0.0:8081/healthz)",
    )
    operator.add_argument("--verbose", action="store_true", help="debug logging")
    operator.add_argument(
        "--metrics-port",
        type=int,
        default=9090,
        help="Prometheus metrics port (default 9090; 0 turns it off)",
    )
    operator.add_argument(
        "--webhook-port", type=int, help="serve the validating webhooks (HTTPS) on this port"
    )
    operator.add_argument(
        "--webhook-address",
        default="0.0.0.0",
        help="address the webhook server listens on (default 0.0.0.0)",
    )
    operator.add_argument(
        "--webhook-host", help="name or IP the API server dials (default: the address)"
    )
    operator.add_argument(
        "--webhook-cert-dir", help="tls.crt, tls.key and ca.crt (default: self-signed at start)"
    )
    operator.add_argument(
        "--webhook-managed",
        metavar="NAME",
        help="keep this ValidatingWebhookConfiguration up to date",
    )
    operator.set_defaults(func=cmd_operator)
