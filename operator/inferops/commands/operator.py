"""`inferops operator`: runs the Kopf operator (Kopf is imported only when it runs)."""

from __future__ import annotations

import argparse
import ssl
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
    problem = client_ca_problem(args)
    if problem:
        return fail(problem)
    webhook = None
    if args.webhook_port:
        webhook = WebhookOptions(
            port=args.webhook_port,
            address=args.webhook_address,
            host=args.webhook_host,
            cert_dir=Path(args.webhook_cert_dir) if args.webhook_cert_dir else None,
            managed=args.webhook_managed,
            client_ca=Path(args.webhook_client_ca) if args.webhook_client_ca else None,
            client_names=tuple(args.webhook_client_name),
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


def client_ca_problem(args: argparse.Namespace) -> str | None:
    """Why the client-authentication options cannot work, before Kopf starts."""
    if args.webhook_client_name and not args.webhook_client_ca:
        return "--webhook-client-name needs --webhook-client-ca"
    if args.webhook_client_ca and not args.webhook_port:
        return "--webhook-client-ca needs --webhook-port"
    if args.webhook_client_ca:
        try:
            ssl.create_default_context().load_verify_locations(args.webhook_client_ca)
        except (OSError, ssl.SSLError) as exc:
            return f"--webhook-client-ca {args.webhook_client_ca}: not a readable PEM CA ({exc})"
    return None


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
    operator.add_argument(
        "--webhook-client-ca",
        metavar="FILE",
        help="PEM CA of the API server's client certificate: callers without a certificate "
        "it signed are refused in the TLS handshake (default: no client verification)",
    )
    operator.add_argument(
        "--webhook-client-name",
        action="append",
        default=[],
        metavar="NAME",
        help="accept only client certificates with this Common Name or DNS name "
        "(repeatable; default: any the CA signed)",
    )
    operator.set_defaults(func=cmd_operator)
