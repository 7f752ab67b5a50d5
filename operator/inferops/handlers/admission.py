"""Validating admission webhooks: the one validation module, cross-object rules, quotas.

Refusals carry `Kind/name: field.path: message` lines; legal but risky specs get warnings.
Quota checks are serialized in this process and count creates admitted a moment ago but
not yet visible in a list, so concurrent creates cannot slip past a quota together.

A review reads only its own namespace (webhook.py has checked the review names one, and
that its objects agree). When the webhook cannot authenticate its caller (no client CA),
a review may be forged by any pod for any namespace: refusals then carry only the
object's own fields and yes/no facts about what it names, never what the namespace holds.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import kopf

from inferops.api.kinds import APPLICATION, BATCH, REALTIME
from inferops.api.names import API_VERSION, GROUP, KIND_APPLICATION, VERSION
from inferops.handlers.metrics import ADMISSIONS
from inferops.handlers.run import WebhookOptions
from inferops.reconcile.common import applications
from inferops.reconcile.kube import Kube
from inferops.reconcile.secrets import secret_states
from inferops.validation import ValidationContext, identify, validate_object
from inferops.validation.advice import warnings_for
from inferops.validation.quota import by_age, limits_for, over_quota, public_instances

# An admitted create is on its way to etcd for as long as the API server takes to hear the
# other webhooks and store it: milliseconds, at most a few seconds. Until it is listed it
# counts against the quota for this long, then it is forgotten: a review that never
# became an object (forged, dry, or refused after us) holds a place only this long.
GRACE_SECONDS = 5.0
MAX_LINES = 10
Pending = list[tuple[float, dict[str, Any]]]


class QuotaLedger:
    """Admitted creates not yet listed by the API server, per namespace and kind.

    An entry is confirmed when its object appears in the list (it then counts as that
    object) and dropped when it has not appeared after GRACE_SECONDS; dry runs are never
    entered. If another webhook holds a create longer than the grace, the handlers'
    own quota check (oldest objects win) still stops whichever came last.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.Lock()
        self.clock = clock
        self._pending: dict[tuple[str, str], Pending] = {}

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._pending.values())

    def _forget_expired(self, now: float) -> None:
        """Drops every entry past its grace, in every namespace (forged reviews may name
        namespaces nobody looks at again)."""
        for key, entries in list(self._pending.items()):
            kept = [(t, o) for t, o in entries if now - t < GRACE_SECONDS]
            if kept:
                self._pending[key] = kept
            else:
                del self._pending[key]

    def check(
        self,
        kube: Kube,
        quotas: Any,
        obj: Mapping[str, Any],
        create: bool,
        *,
        record: bool,
        disclose: bool = True,
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
            now = self.clock()
            self._forget_expired(now)
            # Listed: confirmed, the object counts itself from now on.
            pending = [
                (t, o) for t, o in self._pending.pop(key, []) if o["metadata"]["name"] not in names
            ]
            if create:
                # Oldest first: what is stored, then what was admitted, then this one.
                candidates = [*by_age(listed), *(o for _, o in pending), obj]
            else:
                stored = [dict(obj) if o["metadata"]["name"] == name else o for o in listed]
                candidates = [*by_age(stored), *(o for _, o in pending)]
            refused = over_quota(kind, candidates, limits, ordered=True, disclose=disclose)
            if refused.get(name) is None and create and record:
                pending.append((now, dict(obj)))
            if pending:
                self._pending[key] = pending
            return refused.get(name)


LEDGER = QuotaLedger()


def _refuse(kind: str, name: str, lines: list[str]) -> NoReturn:
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
    kind, name = identify(obj)
    namespace = (obj.get("metadata") or {}).get("namespace")
    if not isinstance(namespace, str) or not namespace:
        # Never list "every namespace" for a review that names none (webhook.py refuses
        # such reviews before they get here; this is the handler's own guard).
        _refuse(kind, name, [f"{kind}/{name}: metadata.namespace: required field is missing"])
    kube: Kube = memo.kube
    options = getattr(memo, "webhook", None)
    disclose = isinstance(options, WebhookOptions) and options.authenticated
    apps = applications(kube, namespace) if kind != KIND_APPLICATION else None
    ctx = ValidationContext(catalog=memo.catalog, applications=apps, old=old, disclose=disclose)
    # Which of the Secrets it names the namespace lets services use (metadata only).
    ctx = dataclasses.replace(ctx, secrets=secret_states(kube, obj, apps))
    problems = validate_object(obj, ctx)
    if problems:
        _refuse(kind, name, [str(p) for p in problems])
    warnings.extend(f"{kind}/{name}: {w}" for w in warnings_for(obj, ctx))
    create = operation == "CREATE"
    grows = old is not None and public_instances(obj) > public_instances(old)
    # An update never adds a service; it is checked only when it asks for more instances
    # (Kopf's own annotation patches on an object over a lowered quota must still pass).
    if kind != KIND_APPLICATION and (create or grows):
        refused = LEDGER.check(
            kube, memo.catalog.quotas, obj, create, record=not dryrun, disclose=disclose
        )
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
