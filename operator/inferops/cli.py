"""The `inferops` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from inferops.api.catalog import Catalog, CatalogError, load_catalog
from inferops.api.crd import all_crds, render_yaml, write_crds
from inferops.contract import fetch_model as fetch_model_contract
from inferops.contract.request_schema import generate_mapping, request_schema, select_api
from inferops.manifests import Document, ManifestError, check_kinds, read_documents
from inferops.validation import ValidationContext, validate_object
from inferops.validation.references import index_applications

EXIT_INVALID = 1
EXIT_UNREADABLE = 2


def _fail(message: str, code: int = EXIT_UNREADABLE) -> int:
    print(f"inferops: {message}", file=sys.stderr)
    return code


def cmd_crds(args: argparse.Namespace) -> int:
    if args.output_dir:
        for path in write_crds(Path(args.output_dir)):
            print(path)
        return 0
    sys.stdout.write("---\n".join(render_yaml(crd) for crd in all_crds().values()))
    return 0


def _inputs(args: argparse.Namespace) -> tuple[Catalog, list[Document]]:
    """The catalog and the documents of validate and render (ManifestError, CatalogError)."""
    catalog = load_catalog(args.catalog)
    documents = read_documents(args.files)
    check_kinds(documents)
    return catalog, documents


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        catalog, documents = _inputs(args)
    except (CatalogError, ManifestError) as exc:
        return _fail(str(exc))
    apps = index_applications(doc.obj for doc in documents)
    # With no AIApplication among the files there is nothing to cross-check against.
    ctx = ValidationContext(catalog=catalog, applications=apps or None)
    problems = [p for doc in documents for p in validate_object(doc.obj, ctx)]
    for problem in problems:
        print(problem)
    return EXIT_INVALID if problems else 0


def cmd_render(args: argparse.Namespace) -> int:
    from inferops.render import render, render_text

    try:
        catalog, documents = _inputs(args)
    except (CatalogError, ManifestError) as exc:
        return _fail(str(exc))
    children, problems = render(documents, catalog)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return EXIT_INVALID
    sys.stdout.write(render_text(children))
    return 0


def cmd_mapping(args: argparse.Namespace) -> int:
    try:
        config = json.loads(Path(args.config).read_text(encoding="utf-8"))
    except OSError as exc:
        return _fail(f"{args.config}: cannot read: {exc.strerror}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _fail(f"{args.config}: invalid JSON: {exc}")
    try:
        api = select_api(config, args.api)
    except LookupError as exc:
        return _fail(f"{args.config}: {exc}", EXIT_INVALID)
    print(json.dumps(generate_mapping(request_schema(api)), indent=4))
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    from inferops.handlers.run import WebhookOptions, run_operator

    try:
        catalog = load_catalog(args.catalog)
    except CatalogError as exc:
        return _fail(str(exc))
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


def cmd_demo(args: argparse.Namespace) -> int:
    from inferops.demo import run_demo

    return run_demo(Path(args.output_dir) if args.output_dir else None)


def cmd_model_server(args: argparse.Namespace) -> int:
    from inferops.runtime.model_server import serve
    from inferops.runtime.models import ModelError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        serve(Path(args.model), args.host, args.port, args.max_body_bytes)
    except ModelError as exc:
        return _fail(str(exc))
    return 0


def cmd_fetch_model(args: argparse.Namespace) -> int:
    from inferops.runtime.fetch_model import fetch_model
    from inferops.storage import StorageError

    options = fetch_model_contract.options_from_args(args)
    try:
        written = fetch_model(options.source, Path(options.dest), options.endpoint, options.region)
    except StorageError as exc:
        return _fail(str(exc), EXIT_INVALID)
    for path in written:
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inferops", description="Machine-learning models as Kubernetes custom resources."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    operator = sub.add_parser("operator", help="run the Kopf operator")
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

    crds = sub.add_parser("crds", help="write or print the generated CRDs")
    crds.add_argument("--output-dir", help="write one file per CRD here instead of printing")
    crds.set_defaults(func=cmd_crds)

    validate = sub.add_parser("validate", help="validate manifests offline")
    validate.add_argument("--catalog", help="catalog YAML (default: the built-in catalog)")
    validate.add_argument("files", nargs="+", metavar="FILE", help="YAML files, - for stdin")
    validate.set_defaults(func=cmd_validate)

    render = sub.add_parser("render", help="print the child objects the operator would apply")
    render.add_argument("--catalog", help="catalog YAML (default: the built-in catalog)")
    render.add_argument("files", nargs="+", metavar="FILE", help="YAML files, - for stdin")
    render.set_defaults(func=cmd_render)

    mapping = sub.add_parser("mapping", help="print the CSV mapping of an app's request schema")
    mapping.add_argument("config", metavar="CONFIG.json", help="the app's config.json")
    mapping.add_argument("--api", metavar="URL", help="the API url (default: the first API)")
    mapping.set_defaults(func=cmd_mapping)

    demo = sub.add_parser("demo", help="the no-cluster tour: model servers, router, batch")
    demo.add_argument("--output-dir", help="keep the demo's outputs here (default: a temp dir)")
    demo.set_defaults(func=cmd_demo)

    server = sub.add_parser("model-server", help="serve a model directory (reference runtime)")
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
    server.set_defaults(func=cmd_model_server)

    fetch = sub.add_parser(fetch_model_contract.COMMAND, help="copy model files into /mnt/models")
    fetch_model_contract.add_fetch_model_arguments(fetch)
    fetch.set_defaults(func=cmd_fetch_model)

    from inferops.runtime.agent import add_agent_command
    from inferops.worker.commands import add_commands

    add_commands(sub)
    add_agent_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
