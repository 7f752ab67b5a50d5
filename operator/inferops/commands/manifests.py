"""`inferops crds`, `validate` and `render`: the CRDs, and manifests checked or expanded
offline (multi-document YAML files, `-` for stdin)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from inferops.api.catalog import Catalog, CatalogError, load_catalog
from inferops.api.crd import all_crds, render_yaml, write_crds
from inferops.commands.common import EXIT_INVALID, fail
from inferops.manifests import Document, ManifestError, check_kinds, read_documents
from inferops.validation import ValidationContext, validate_object
from inferops.validation.references import index_applications


def one_line(problem: object) -> str:
    """A problem as one printable line: names and keys come from the input, and a line
    break or control character in one must not split or forge the `Kind/name: path:
    message` lines other tools parse (it is shown escaped, as repr() would)."""
    text = str(problem)
    return (
        text
        if text.isprintable()
        else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    )


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
        return fail(str(exc))
    apps = index_applications(doc.obj for doc in documents)
    # With no AIApplication among the files there is nothing to cross-check against.
    ctx = ValidationContext(catalog=catalog, applications=apps or None)
    problems = [p for doc in documents for p in validate_object(doc.obj, ctx)]
    for problem in problems:
        print(one_line(problem))
    return EXIT_INVALID if problems else 0


def cmd_render(args: argparse.Namespace) -> int:
    from inferops.render import render, render_text

    try:
        catalog, documents = _inputs(args)
    except (CatalogError, ManifestError) as exc:
        return fail(str(exc))
    children, problems = render(documents, catalog)
    for problem in problems:
        print(one_line(problem), file=sys.stderr)
    if problems:
        return EXIT_INVALID
    sys.stdout.write(render_text(children))
    return 0


def register(subparsers: Any) -> None:
    """Registers `crds`, `validate` and `render` on the `inferops` subparsers."""
    crds = subparsers.add_parser("crds", help="write or print the generated CRDs")
    crds.add_argument("--output-dir", help="write one file per CRD here instead of printing")
    crds.set_defaults(func=cmd_crds)

    validate = subparsers.add_parser("validate", help="validate manifests offline")
    validate.add_argument("--catalog", help="catalog YAML (default: the built-in catalog)")
    validate.add_argument("files", nargs="+", metavar="FILE", help="YAML files, - for stdin")
    validate.set_defaults(func=cmd_validate)

    render = subparsers.add_parser(
        "render", help="print the child objects the operator would apply"
    )
    render.add_argument("--catalog", help="catalog YAML (default: the built-in catalog)")
    render.add_argument("files", nargs="+", metavar="FILE", help="YAML files, - for stdin")
    render.set_defaults(func=cmd_render)
