"""Operator-wide Kopf settings, all in one startup handler."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import kopf

from inferops.api.names import FIELD_MANAGER, GROUP
from inferops.handlers import metrics
from inferops.handlers.cache import select_children
from inferops.handlers.run import WebhookOptions
from inferops.handlers.webhook import webhook_server


class NoDiffBase(kopf.DiffBaseStorage):
    """Kopf extracts every event's "essence" (a deep copy of the object) to detect spec
    changes for create/update handlers. The operator has none, so nothing is built, kept
    or read: that copy was a tenth of the operator's CPU at a hundred services."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return {}

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # Passes are level-based event handlers: Kopf stores no progress and no finalizer
    # (should it ever, under our own prefix), and compares no object with a last-handled one.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = FIELD_MANAGER
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.batching.error_delays = [1, 2, 5, 10, 30, 60]
    settings.networking.request_timeout = 60
    # The first list of a kind comes in pages: memory at start-up stays one page high.
    settings.watching.chunk_size = 500
    select_children(settings)
    metrics_port = getattr(memo, "metrics_port", None)
    if metrics_port:
        metrics.serve(metrics_port)
    options = getattr(memo, "webhook", None)
    if isinstance(options, WebhookOptions):
        settings.admission.server = webhook_server(options)
        if options.managed:
            settings.admission.managed = options.managed
