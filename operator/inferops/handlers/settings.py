"""Operator-wide Kopf settings, all in one startup handler."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from inferops.api.names import FIELD_MANAGER, GROUP
from inferops.handlers import metrics
from inferops.handlers.cache import select_children
from inferops.handlers.run import WebhookOptions
from inferops.handlers.webhook import webhook_server


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # Passes are level-based event handlers, so Kopf stores no progress, no last-handled
    # spec and no finalizer; should it ever, they stay under our own prefix.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
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
