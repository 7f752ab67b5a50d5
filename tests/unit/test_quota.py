"""Quotas: limits from catalog and annotations; the oldest objects win (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from inferops.api.catalog import Quotas
from inferops.validation.quota import Limits, limits_for, over_quota, public_instances
from tests.unit.rules_table import bs, multipool, rts, version


def aged(obj: dict[str, Any], minute: int, name: str) -> dict[str, Any]:
    obj["metadata"].update(name=name, creationTimestamp=f"2026-01-01T00:{minute:02d}:00Z")
    return obj


def test_limits_from_catalog_and_annotations() -> None:
    quotas = Quotas()
    assert limits_for(quotas, None) == (Limits(20, 1000, None), [])
    limits, notes = limits_for(
        quotas,
        {
            "serving.inferops.dev/quota-realtime-services": "3",
            "serving.inferops.dev/quota-batch-services": "0",
            "serving.inferops.dev/quota-public-instances": "8",
        },
    )
    assert (limits, notes) == (Limits(3, 0, 8), [])
    limits, notes = limits_for(quotas, {"serving.inferops.dev/quota-realtime-services": "many"})
    assert limits.realtime == 20 and "not a whole number" in notes[0]


def test_twenty_first_realtime_service_is_over_quota() -> None:
    services = [aged(rts(), i, f"s{i:02d}") for i in range(21)]
    refused = over_quota("RealTimeService", services, Limits(20, 1000, None))
    assert list(refused) == ["s20"]
    assert "quota of 20 real-time services" in refused["s20"]


def test_oldest_win_whatever_the_listing_order() -> None:
    services = [aged(rts(), 5, "young"), aged(rts(), 1, "old"), aged(rts(), 3, "middle")]
    assert list(over_quota("RealTimeService", services, Limits(2, 1000, None))) == ["young"]
    # A candidate not stored yet (no timestamp) is the newest.
    candidate = rts(name="new")
    assert list(
        over_quota("RealTimeService", [*services[:2], candidate], Limits(2, 1000, None))
    ) == ["new"]


def test_deleted_objects_free_their_place() -> None:
    going = aged(rts(), 0, "going")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T01:00:00Z"
    assert (
        over_quota("RealTimeService", [going, aged(rts(), 1, "next")], Limits(1, 1000, None)) == {}
    )


@pytest.mark.parametrize(
    ("obj", "instances"),
    [
        (rts(version("1.0.0", 70, computeNodes=3), version("2.0.0", 30)), 4),
        (rts(version("1.0.0", 100, computeNodes=2), resourcePool="pool-a"), 0),
        (multipool(4), 0),
    ],
)
def test_public_instances_count_only_the_public_pool(obj: dict[str, Any], instances: int) -> None:
    assert public_instances(obj) == instances


def test_public_instance_quota() -> None:
    services = [
        aged(rts(version("1.0.0", 100, computeNodes=3)), 1, "a"),
        aged(rts(version("1.0.0", 100, computeNodes=3)), 2, "b"),
        aged(rts(version("1.0.0", 100, computeNodes=2), resourcePool="pool-a"), 3, "c"),
        aged(rts(version("1.0.0", 100, computeNodes=1)), 4, "d"),
    ]
    refused = over_quota("RealTimeService", services, Limits(20, 1000, 4))
    assert list(refused) == ["b"]
    assert "3 in use, this service asks for 3" in refused["b"]


def test_batch_quota() -> None:
    jobs = [aged(bs(), i, f"b{i}") for i in range(3)]
    assert list(over_quota("BatchService", jobs, Limits(20, 2, None))) == ["b2"]
