"""The webhook's quota ledger: concurrent creates, same-second timestamps, updates.

The fake stands in for our own Kube wrapper (the interface boundary); the real API server
path is covered by tests/cluster/test_admission.py.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any

from inferops.api.catalog import Quotas
from inferops.handlers.admission import QuotaLedger
from tests.unit.rules_table import rts, version

SECOND = "2026-01-01T00:00:00Z"


class StoreKube:
    """Lists what was stored; objects appear only after a delay, like a slow informer."""

    def __init__(self, annotations: dict[str, str]) -> None:
        self.annotations = annotations
        self.stored: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def get(self, *_: Any) -> dict[str, Any]:
        return {"metadata": {"annotations": self.annotations}}

    def list_objects(self, *_: Any) -> list[dict[str, Any]]:
        time.sleep(0.01)
        with self.lock:
            return list(self.stored)


def service(name: str, nodes: int = 1) -> dict[str, Any]:
    obj = rts(version("1.0.0", 100, computeNodes=nodes), name=name)
    # The API server sets creationTimestamp before admission: all in the same second here.
    obj["metadata"].update(namespace="ns", creationTimestamp=SECOND)
    return obj


def test_concurrent_creates_admit_exactly_the_quota() -> None:
    kube = StoreKube({"serving.inferops.dev/quota-realtime-services": "3"})
    ledger = QuotaLedger()

    def attempt(i: int) -> bool:
        return (
            ledger.check(
                kube,
                Quotas(),
                service(f"z{9 - i}"),
                create=True,  # type: ignore[arg-type]
                record=True,
            )
            is None
        )

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(attempt, range(10))) == 3


def test_candidate_is_newest_even_when_its_timestamp_ties() -> None:
    kube = StoreKube({"serving.inferops.dev/quota-realtime-services": "2"})
    kube.stored = [service("b"), service("c")]
    # "a" sorts first by name within the same second, yet it is the newcomer.
    refused = QuotaLedger().check(kube, Quotas(), service("a"), create=True, record=True)  # type: ignore[arg-type]
    assert refused is not None and "quota of 2" in refused


def test_dry_runs_are_not_remembered() -> None:
    kube = StoreKube({"serving.inferops.dev/quota-realtime-services": "1"})
    ledger = QuotaLedger()
    assert ledger.check(kube, Quotas(), service("a"), create=True, record=False) is None  # type: ignore[arg-type]
    assert ledger.check(kube, Quotas(), service("b"), create=True, record=True) is None  # type: ignore[arg-type]


def test_updates_keep_their_place() -> None:
    kube = StoreKube({"serving.inferops.dev/quota-public-instances": "4"})
    kube.stored = [service("a", 2), service("b", 2)]
    ledger = QuotaLedger()
    assert ledger.check(kube, Quotas(), service("a", 2), create=False, record=True) is None  # type: ignore[arg-type]
    refused = ledger.check(kube, Quotas(), service("b", 3), create=False, record=True)  # type: ignore[arg-type]
    assert refused is not None and "2 in use, this service asks for 3" in refused


class Clock:
    """A monotonic clock the test moves by hand (no sleeping, no timing assertions)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def create(ledger: QuotaLedger, kube: StoreKube, obj: dict[str, Any]) -> str | None:
    """Why a real (not dry-run) create of `obj` is refused, or None."""
    return ledger.check(kube, Quotas(), obj, create=True, record=True)  # type: ignore[arg-type]


def test_forged_creates_stop_counting_after_the_grace() -> None:
    """20 CREATE reviews that never become objects (forged, or refused later by the API
    server) hold the namespace's quota only for the grace; then a real create passes."""
    from inferops.handlers.admission import GRACE_SECONDS

    kube = StoreKube({})  # the catalog's default: 20 real-time services per namespace
    clock = Clock()
    ledger = QuotaLedger(clock=clock)
    for i in range(20):
        assert create(ledger, kube, service(f"forged-{i:02d}")) is None
    # Within the grace they may still be real creates on their way to etcd: they count.
    assert create(ledger, kube, service("real")) is not None
    clock.now += GRACE_SECONDS
    assert create(ledger, kube, service("real")) is None


def test_entries_confirmed_by_the_object_keep_counting() -> None:
    """An admitted create that became an object counts as that object, grace or not."""
    from inferops.handlers.admission import GRACE_SECONDS

    kube = StoreKube({"serving.inferops.dev/quota-realtime-services": "1"})
    clock = Clock()
    ledger = QuotaLedger(clock=clock)
    assert create(ledger, kube, service("a")) is None
    kube.stored.append(service("a"))
    clock.now += GRACE_SECONDS * 10
    assert create(ledger, kube, service("b")) is not None


def test_expired_entries_of_every_namespace_are_forgotten() -> None:
    """Forged reviews naming many namespaces leave nothing behind once their grace is over."""
    from inferops.handlers.admission import GRACE_SECONDS

    kube = StoreKube({})
    clock = Clock()
    ledger = QuotaLedger(clock=clock)
    for i in range(50):
        forged = service("forged")
        forged["metadata"]["namespace"] = f"ns-{i}"
        create(ledger, kube, forged)
    assert len(ledger) == 50
    clock.now += GRACE_SECONDS
    create(ledger, kube, service("real"))
    assert len(ledger) == 1
