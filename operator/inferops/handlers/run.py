"""Runs the Kopf operator with the catalog in its memo."""

from __future__ import annotations

from collections.abc import Sequence

import kopf

from inferops.api.catalog import Catalog


def run_operator(
    catalog: Catalog,
    namespaces: Sequence[str] = (),
    peering: str | None = None,
    liveness: str | None = None,
    verbose: bool = False,
) -> None:
    """Blocks until the operator stops. No namespaces: cluster-wide."""
    import inferops.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        standalone=peering is None,
        peering_name=peering,
        liveness_endpoint=liveness,
        memo=kopf.Memo(catalog=catalog),
    )
