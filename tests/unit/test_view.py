"""Passes over a view of the caches: an unchanged service costs no API request, a change
applies only the children that differ, pruning works from the cache, and our own writes
are seen by the next pass before their watch events arrive."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from inferops.api.catalog import default_catalog
from inferops.api.names import KIND_BATCH, KIND_REALTIME
from inferops.handlers.cache import view_scopes
from inferops.reconcile.batch import reconcile_batch
from inferops.reconcile.realtime import reconcile_realtime
from inferops.reconcile.trim import trim
from inferops.reconcile.view import (
    ANNOTATION_APPLIED,
    NAMED,
    RecentWrites,
    Scope,
    View,
    ViewCluster,
    spec_hash,
    view_of,
)
from tests.unit.fake_kube import FakeKube
from tests.unit.rules_table import bs, rts, version
from tests.unit.test_reconcile_table import (
    APP,
    NAMESPACE,
    NS,
    SVC,
    TABLE,
    TWO_VERSIONS,
    batch,
    placed,
    realtime,
    realtime_pass,
)

Obj = dict[str, Any]
CATALOG = default_catalog()


class CountingKube(FakeKube):
    """FakeKube that also records every read reaching the API."""

    def __init__(self, objects: Any = ()) -> None:
        super().__init__(objects)
        self.reads: list[str] = []

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        self.reads.append(f"get {kind}/{name}")
        return super().get(api_version, kind, namespace, name)

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Obj]:
        self.reads.append(f"list {kind}")
        return super().list_objects(api_version, kind, namespace, labels)


def cached_pass(kube: CountingKube, kind: str = KIND_REALTIME, name: str = "svc") -> list[str]:
    """One pass over a view of everything in `kube`; the API calls it made."""
    kube.actions.clear()
    kube.reads.clear()
    view = view_of(kube.objects.values(), view_scopes(kind, NS, name))
    reconcile = reconcile_realtime if kind == KIND_REALTIME else reconcile_batch
    reconcile(ViewCluster(kube, view), CATALOG, NS, name)
    return kube.actions + kube.reads


def test_a_pass_over_an_unchanged_service_makes_no_request() -> None:
    kube = CountingKube([APP, SVC, NAMESPACE])
    first = cached_pass(kube)
    assert sorted(a.split(" ", 1)[1] for a in first if a.startswith("apply")) == TWO_VERSIONS
    assert not [a for a in first if a.startswith(("get", "list"))]  # reads: all from the view
    assert cached_pass(kube) == []
    assert cached_pass(kube) == []


def test_a_spec_change_applies_only_the_children_that_differ() -> None:
    kube = CountingKube([APP, SVC, NAMESPACE])
    cached_pass(kube)
    changed = placed(rts(version("1.0.0", 60), version("2.0.0", 40)), generation=2)
    kube.objects[("serving.inferops.dev/v1alpha1", KIND_REALTIME, NS, "svc")].update(
        spec=changed["spec"], metadata=changed["metadata"]
    )
    calls = cached_pass(kube)
    # Only the router's config carries the traffic split (and the router Deployment its
    # checksum): the model Deployments and every Service stay as they were.
    assert sorted(c for c in calls if c.startswith("apply")) == [
        "apply ConfigMap/svc-router",
        "apply Deployment/svc-router",
    ]
    assert cached_pass(kube) == []


def test_a_child_deleted_by_hand_is_applied_again() -> None:
    kube = CountingKube([APP, SVC, NAMESPACE])
    cached_pass(kube)
    kube.objects.pop(("v1", "Service", NS, "svc"))
    assert [c for c in cached_pass(kube) if not c.startswith("status")] == ["apply Service/svc"]


def test_pruning_reads_the_cache() -> None:
    kube = CountingKube([APP, SVC, NAMESPACE])
    cached_pass(kube)
    one = placed(rts(version("1.0.0", 100)), generation=2)
    kube.objects[("serving.inferops.dev/v1alpha1", KIND_REALTIME, NS, "svc")].update(
        spec=one["spec"], metadata=one["metadata"]
    )
    calls = cached_pass(kube)
    deleted = sorted(c for c in calls if c.startswith("delete"))
    assert deleted == [
        "delete Deployment/svc-iris-2-0-0-68d2acd4",
        "delete Service/svc-iris-2-0-0-68d2acd4",
    ]
    assert not [c for c in calls if c.startswith(("get", "list"))]


def test_a_batch_service_pass_over_its_job_makes_no_request() -> None:
    kube = CountingKube([APP, placed(bs()), NAMESPACE])
    first = cached_pass(kube, KIND_BATCH, "job")
    assert "apply Job/job" in first
    assert cached_pass(kube, KIND_BATCH, "job") == []


def test_applied_children_carry_the_hash_of_their_desired_object() -> None:
    kube = CountingKube([APP, SVC, NAMESPACE])
    cached_pass(kube)
    for obj in kube.objects.values():
        if obj["kind"] in ("Deployment", "Service", "ConfigMap", "NetworkPolicy"):
            annotations = obj["metadata"]["annotations"]
            desired = copy.deepcopy(obj)
            desired["metadata"]["annotations"].pop(ANNOTATION_APPLIED)
            if not desired["metadata"]["annotations"]:
                del desired["metadata"]["annotations"]
            assert annotations[ANNOTATION_APPLIED] == spec_hash(desired)


# ---- RecentWrites ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def child(name: str, version: str, replicas: int = 1) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": NS,
            "resourceVersion": version,
            "labels": {
                "serving.inferops.dev/owner-kind": KIND_REALTIME,
                "serving.inferops.dev/owner-name": "svc",
            },
        },
        "spec": {"replicas": replicas},
    }


SCOPE: Scope = ("Deployment", NS, KIND_REALTIME, "svc")


def names(view: View) -> list[tuple[str, int]]:
    return sorted((o["metadata"]["name"], o["spec"]["replicas"]) for o in view.scopes[SCOPE])


@pytest.mark.parametrize(
    ("cached", "written", "expected", "remembered"),
    [
        # Our create is not in the caches yet: the view has it.
        ([], child("a", "10"), [("a", 1)], True),
        # The caches hold an older version: ours replaces it.
        ([child("a", "9", 3)], child("a", "10"), [("a", 1)], True),
        # The caches caught up (same or newer version): they win and the write is dropped.
        ([child("a", "10", 3)], child("a", "10"), [("a", 3)], False),
        ([child("a", "11", 5)], child("a", "10"), [("a", 5)], False),
    ],
)
def test_recent_writes_merge(
    cached: list[Obj], written: Obj, expected: list[tuple[str, int]], remembered: bool
) -> None:
    writes = RecentWrites(clock=Clock())
    writes.wrote(written)
    view = writes.merge(View({SCOPE: [trim(o) for o in cached]}))
    assert names(view) == expected
    assert (len(writes) == 1) is remembered


def test_a_deleted_child_stays_out_of_views_until_forgotten() -> None:
    clock = Clock()
    writes = RecentWrites(seconds=60, clock=clock)
    writes.deleted("Deployment", NS, "a")
    assert names(writes.merge(View({SCOPE: [trim(child("a", "9"))]}))) == []
    clock.now = 61
    assert names(writes.merge(View({SCOPE: [trim(child("a", "9"))]}))) == [("a", 1)]
    assert len(writes) == 0


def test_echo_is_only_the_version_we_wrote() -> None:
    writes = RecentWrites(clock=Clock())
    writes.wrote(child("a", "10"))
    assert writes.echo(child("a", "10"))
    assert not writes.echo(child("a", "11"))
    assert not writes.echo(child("b", "10"))


def test_a_view_answers_only_for_what_it_covers() -> None:
    kube = CountingKube([NAMESPACE, {**NAMESPACE, "metadata": {"name": "other"}}])
    cluster = ViewCluster(kube, view_of(kube.objects.values(), [("Namespace", None, NAMED, NS)]))
    assert cluster.get("v1", "Namespace", None, NS) is not None
    assert kube.reads == []
    assert cluster.get("v1", "Namespace", None, "other") is not None  # not covered: the API
    assert kube.reads == ["get Namespace/other"]


PASS_KINDS = {realtime: KIND_REALTIME, realtime_pass: KIND_REALTIME, batch: KIND_BATCH}


@pytest.mark.parametrize("name", [n for n, row in TABLE.items() if row.reconcile in PASS_KINDS])
def test_a_pass_changes_nothing_it_reads(name: str) -> None:
    """Views share their objects with the caches (lists are not copied): every service
    scenario of the reconciler table, run over a view, leaves the viewed objects as they
    were. (An application's pass reads one object, which get() copies.)"""
    row = TABLE[name]
    kind = PASS_KINDS[row.reconcile]
    target = "svc" if kind == KIND_REALTIME else "job"
    kube = CountingKube(row.objects)
    # Copies, as a watch delivers them (FakeKube changes its own objects in place).
    view = view_of(copy.deepcopy(list(kube.objects.values())), view_scopes(kind, NS, target))
    before = copy.deepcopy(view.scopes)
    reconcile = reconcile_realtime if kind == KIND_REALTIME else reconcile_batch
    reconcile(ViewCluster(kube, view), row.catalog, NS, target)
    assert view.scopes == before


def children(kube: FakeKube) -> dict[tuple[str, str], Obj]:
    """Every child as applied, without what the API server adds to it."""
    found = {}
    for (_, kind, _, name), obj in kube.objects.items():
        if kind in ("Namespace", "AIApplication", KIND_REALTIME):
            continue
        kept = copy.deepcopy(obj)
        for field in ("resourceVersion", "uid", "generation", "creationTimestamp"):
            kept["metadata"].pop(field, None)
        kept.pop("status", None)
        found[(kind, name)] = kept
    return found


@pytest.mark.parametrize(
    "change",
    [
        rts(version("1.0.0", 60), version("2.0.0", 40)),  # the split
        rts(version("1.0.0", 100)),  # a version dropped (its children pruned)
        rts(version("1.0.0", 70, computeNodes=3), version("2.0.0", 30)),  # scale
    ],
    ids=["split", "version dropped", "scale"],
)
def test_rolling_back_is_reverting_the_spec(change: Obj) -> None:
    """The documented guarantee (docs/gitops.md): the previous spec makes the previous
    children exactly, so `git revert` (or an Argo CD rollback) restores what served."""
    kube = CountingKube([APP, SVC, NAMESPACE])
    cached_pass(kube)
    before = children(kube)
    key = ("serving.inferops.dev/v1alpha1", KIND_REALTIME, NS, "svc")
    original = copy.deepcopy(kube.objects[key]["spec"])
    kube.objects[key]["spec"] = change["spec"]
    kube.objects[key]["metadata"]["generation"] = 2
    cached_pass(kube)
    assert children(kube) != before
    kube.objects[key]["spec"] = original
    kube.objects[key]["metadata"]["generation"] = 3
    cached_pass(kube)
    assert children(kube) == before
