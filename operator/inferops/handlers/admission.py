"""Validating admission webhooks: the one validation module, cross-object rules, quotas.

Refusals carry `Kind/name: field.path: message` lines; legal but risky specs get warnings.
Quota checks are serialized in this process and count creates admitted a moment ago but
not yet visible in a list, so concurrent creates cannot slip past a quota together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import kopf

from inferops.api.kinds import APPLICATION, BATCH, REALTIME
from inferops.api.names import API_VERSION, GROUP, KIND_APPLICATION, VERSION
from inferops.handlers.metrics import ADMISSIONS
from inferops.reconcile.common import applications
from inferops.reconcile.kube import Kube
from inferops.validation import ValidationContext, validate_object
from inferops.validation.advice import warnings_for
from inferops.validation.quota import by_age, limits_for, over_quota, public_instances

PENDING_SECONDS = 60.0
MAX_LINES = 10


class QuotaLedger:
    """Admitted creates not yet listed by the API server, per namespace and kind."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._pending: dict[tuple[str, str], list[tuple[float, dict[str, Any]]]] = {}

    def check(
        self, kube: Kube, quotas: Any, obj: Mapping[str, Any], create: bool, record: bool
    ) -> str | None:
        """Why `obj` would exceed a quota, or None (and, for a real create, remember it)."""
        kind, meta = obj["kind"], obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        key = (kind, namespace)
        with self.lock:
            ns_obj = kube.get("v1", "Namespace", None, namespace) or {}
            limits, _ = limits_for(quotas, (ns_obj.get("metadata") or {}).get("annotations"))
            listed = kube.list_objects(API_VERSION, kind, namespace)
            names = {o["metadata"]["name"] for o in listed}
            now = time.monotonic()
            pending = [
                (t, o)
                for t, o in self._pending.get(key, [])
                if now - t < PENDING_SECONDS and o["metadata"]["name"] not in names
            ]
            self._pending[key] = pending
            if create:
                # Oldest first: what is stored, then what was admitted, then this one.
                candidates = [*by_age(listed), *(o for _, o in pending), obj]
            else:
                stored = [dict(obj) if o["metadata"]["name"] == name else o for o in listed]
                candidates = [*by_age(stored), *(o for _, o in pending)]
            refused = over_quota(kind, candidates, limits, ordered=True).get(name)
            if refused is None and create and record:
                pending.append((now, dict(obj)))
            return refused


LEDGER = QuotaLedger()


def _refuse(kind: str, name: str, lines: list[str]) -> None:
    ADMISSIONS.labels(kind, "false").inc()
    shown = lines[:MAX_LINES]
    if len(lines) > MAX_LINES:
        shown.append(f"... and {len(lines) - MAX_LINES} more")
    raise kopf.AdmissionError("\n".join(shown), code=422)


def admit(
    body: Mapping[str, Any],
    *,
    old: Mapping[str, Any] | None,
    operation: str | None,
    dryrun: bool,
    warnings: list[str],
    memo: Any,
) -> None:
    obj = dict(body)
    kind, name = obj.get("kind", "?"), obj.get("metadata", {}).get("name", "?")
    namespace = obj.get("metadata", {}).get("namespace")
    kube: Kube = memo.kube
    apps = applications(kube, namespace) if kind != KIND_APPLICATION else None
    ctx = ValidationContext(catalog=memo.catalog, applications=apps, old=old)
    problems = validate_object(obj, ctx)
    if problems:
        _refuse(kind, name, [str(p) for p in problems])
    warnings.extend(f"{kind}/{name}: {w}" for w in warnings_for(obj))
    create = operation == "CREATE"
    grows = old is not None and public_instances(obj) > public_instances(old)
    # An update never adds a service; it is checked only when it asks for more instances
    # (Kopf's own annotation patches on an object over a lowered quota must still pass).
    if kind != KIND_APPLICATION and (create or grows):
        refused = LEDGER.check(kube, memo.catalog.quotas, obj, create, record=not dryrun)
        if refused:
            _refuse(kind, name, [f"{kind}/{name}: quota: {refused}"])
    ADMISSIONS.labels(kind, "true").inc()


@kopf.on.validate(
    GROUP, VERSION, APPLICATION.plural, id="aiapplications", operations=["CREATE", "UPDATE"]
)
@kopf.on.validate(
    GROUP, VERSION, REALTIME.plural, id="realtimeservices", operations=["CREATE", "UPDATE"]
)
@kopf.on.validate(GROUP, VERSION, BATCH.plural, id="batchservices", operations=["CREATE", "UPDATE"])
def validate(
    *,
    body: kopf.Body,
    warnings: list[str],
    dryrun: bool,
    memo: Any,
    old: kopf.Body | None = None,
    operation: str | None = None,
    **_: Any,
) -> None:
    admit(body, old=old, operation=operation, dryrun=dryrun, warnings=warnings, memo=memo)
