"""A pass that failed still tells the user why: in the status and in an Event.

The controller retries a failed pass with a growing delay; meanwhile the service's Ready
condition says what failed (a child the API server refused, with its words, or any other
error) and when the next attempt comes, so no service sits with an empty or stale status
while the operator's log is the only place that knows.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from inferops.api import phases
from inferops.api.batch import BatchServiceStatus
from inferops.api.names import API_VERSION
from inferops.api.realtime import RealTimeServiceStatus
from inferops.reconcile.common import Outcome, verdict_status, write_status
from inferops.reconcile.kube import Cluster, KubeError
from inferops.reconcile.lifecycle import Verdict

# Characters of an error's own text kept in a status message.
DETAIL = 500


class ChildRefusedError(Exception):
    """The API server refused to apply one of the service's children."""

    def __init__(self, child: str, status: int, message: str) -> None:
        super().__init__(f"{child}: {message}")
        self.child = child
        self.status = status
        self.message = message


def apply_children(kube: Cluster, desired: Iterable[Mapping[str, Any]]) -> None:
    """Applies every child; a refusal names the child it concerns."""
    for child in desired:
        try:
            kube.apply(child)
        except KubeError as exc:
            ref = f"{child['kind']}/{child['metadata']['name']}"
            raise ChildRefusedError(ref, exc.status, str(exc)) from exc


def _bounded(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= DETAIL else flat[: DETAIL - 3] + "..."


def describe(exc: BaseException) -> tuple[str, str]:
    """The Ready reason and the message for a failed pass."""
    if isinstance(exc, ChildRefusedError):
        return phases.CHILD_REFUSED, _bounded(
            f"the API server refused {exc.child} ({exc.status}): {exc.message}"
        )
    if isinstance(exc, KubeError):
        return phases.RECONCILE_ERROR, _bounded(f"an API request failed ({exc.status}): {exc}")
    return phases.RECONCILE_ERROR, _bounded(f"{type(exc).__name__}: {exc}")


def errored_phase(old: str | None) -> Any:
    """A new or deploying service stays Deploying; a running one is Abnormal (it serves
    what was applied before, not its spec); any other keeps its phase."""
    if old in (None, phases.DEPLOYING):
        return phases.DEPLOYING
    if old in (phases.RUNNING, phases.ABNORMAL):
        return phases.ABNORMAL
    return old


def errored_status(
    kind: str,
    old: Mapping[str, Any] | None,
    generation: int | None,
    *,
    reason: str,
    message: str,
    now: datetime.datetime,
) -> RealTimeServiceStatus | BatchServiceStatus:
    """Only the phase, the conditions and the message: what the children report stays."""
    phase = errored_phase((old or {}).get("phase"))
    verdict: Verdict[Any] = Verdict(
        phase,
        reason,
        message,
        progressing=phase == phases.DEPLOYING,
        progressing_reason=phases.DEPLOYING,
    )
    return verdict_status(kind, old, generation, verdict, now)


def write_error(
    kube: Cluster, key: tuple[str, str, str], exc: BaseException, retry: float
) -> Outcome | None:
    """Writes why the pass of (kind, namespace, name) failed and when it is tried again.
    None when the object is gone."""
    kind, namespace, name = key
    obj = kube.get(API_VERSION, kind, namespace, name)
    if obj is None:
        return None
    reason, message = describe(exc)
    status = errored_status(
        kind,
        obj.get("status"),
        obj["metadata"].get("generation"),
        reason=reason,
        message=f"{message}; retrying in {retry:g} s",
        now=datetime.datetime.now(datetime.UTC),
    )
    return write_status(kube, obj, status)
