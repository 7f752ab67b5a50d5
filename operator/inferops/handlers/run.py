"""Runs the Kopf operator with the catalog (and the webhook options) in its memo."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import kopf

from inferops.api.catalog import Catalog


@dataclass(frozen=True)
class WebhookOptions:
    """Where the validating webhooks listen and how the API server reaches them."""

    port: int
    address: str = "0.0.0.0"
    host: str | None = None  # the name or IP the API server dials; default: address
    cert_dir: Path | None = None  # tls.crt, tls.key, ca.crt; default: self-signed at start
    managed: str | None = None  # a ValidatingWebhookConfiguration that Kopf keeps current
    # The CA that signs the API server's client certificate: with it, callers without such
    # a certificate are refused in the TLS handshake (docs/helm.md, "Webhook callers").
    client_ca: Path | None = None
    # Accepted client certificate names (Common Name or DNS SAN); empty: any the CA signed.
    client_names: tuple[str, ...] = ()

    @property
    def authenticated(self) -> bool:
        """Whether every review comes from a caller that proved who it is (the API server)."""
        return self.client_ca is not None


def run_operator(
    catalog: Catalog,
    *,
    namespaces: Sequence[str] = (),
    peering: str | None = None,
    liveness: str | None = None,
    verbose: bool = False,
    webhook: WebhookOptions | None = None,
    metrics_port: int | None = None,
) -> None:
    """Blocks until the operator stops. No namespaces: cluster-wide."""
    import inferops.handlers  # registers the handlers
    from inferops.handlers.triggers import children_through_kopf

    if peering is not None:
        children_through_kopf()

    if webhook is not None:
        import inferops.handlers.admission  # noqa: F401

    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    if not verbose:
        # Kopf logs every handler call at INFO: a line per event of every child, which at
        # a thousand services is most of the operator's log and a share of its CPU.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        standalone=peering is None,
        peering_name=peering,
        liveness_endpoint=liveness,
        memo=kopf.Memo(
            catalog=catalog,
            webhook=webhook,
            metrics_port=metrics_port,
            namespaces=tuple(namespaces),
            peering=peering,
        ),
    )
