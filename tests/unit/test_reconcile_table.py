"""Reconciler table tests, in the manner of Knative's: the objects that exist go in; the
applies, deletes, patches, status and events that come out are checked, against the
in-memory `FakeKube` (no cluster). tests/cluster and tests/e2e run the same reconcilers on
a real API server and a real node."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from inferops.api.catalog import Catalog, GatewayRef, RouterConfig, default_catalog
from inferops.api.names import (
    ANNOTATION_QUOTA_REALTIME,
    ANNOTATION_USABLE_SECRETS,
    KIND_REALTIME,
    LABEL_USABLE,
)
from inferops.handlers.cache import view_scopes
from inferops.reconcile.application import reconcile_application
from inferops.reconcile.batch import reconcile_batch
from inferops.reconcile.common import Outcome
from inferops.reconcile.conditions import condition
from inferops.reconcile.realtime import reconcile_realtime
from inferops.reconcile.view import ANNOTATION_APPLIED, ViewCluster, spec_hash, view_of
from inferops.resources.desired import desired_state, parse_service
from inferops.validation.references import index_applications, version_specs
from tests.unit.fake_kube import FakeKube
from tests.unit.rules_table import app, bs, rts, version

NS = "ns"
Obj = dict[str, Any]
V1 = "svc-iris-1-0-0-da9f2149"
V2 = "svc-iris-2-0-0-68d2acd4"
ROUTER_CHILDREN = [
    "ConfigMap/svc-router",
    "Deployment/svc-router",
    "Service/svc",
    "NetworkPolicy/svc-models",
    "NetworkPolicy/svc-router",
]
TWO_VERSIONS = sorted(
    [f"Deployment/{V1}", f"Service/{V1}", f"Deployment/{V2}", f"Service/{V2}", *ROUTER_CHILDREN]
)


def placed(
    obj: Obj,
    generation: int = 1,
    uid: str = "u1",
    created: str = "2026-01-01T00:00:00Z",
    status: Obj | None = None,
) -> Obj:
    obj = copy.deepcopy(obj)
    obj["metadata"].update(namespace=NS, uid=uid, generation=generation, creationTimestamp=created)
    if status is not None:
        obj["status"] = status
    return obj


APP = placed(app())
SVC = placed(rts(version("1.0.0", 70), version("2.0.0", 30)))
SVC_ONE = placed(rts(version("1.0.0", 100)), generation=2)
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
DEPLOYING = {
    "phase": "Deploying",
    "observedGeneration": 1,
    "conditions": [
        {
            "type": "Progressing",
            "status": "True",
            "reason": "Deploying",
            "observedGeneration": 1,
            "lastTransitionTime": "2099-01-01T00:00:00Z",
        }
    ],
}
GATEWAY = default_catalog().model_copy(
    update={
        "router": RouterConfig(mode="gateway-api", gateway=GatewayRef(name="gw", namespace="infra"))
    }
)


def children(service: Obj, ready: bool) -> list[Obj]:
    """The service's children as the cluster holds them once applied (ready or not)."""
    built = desired_state(
        parse_service(service, version_specs(index_applications([APP]), NS)), default_catalog()
    )
    for child in built:
        # As the operator applies it: with the hash of the desired object (reconcile.view).
        child["metadata"].setdefault("annotations", {})[ANNOTATION_APPLIED] = spec_hash(child)
        if child["kind"] == "Deployment":
            replicas = child["spec"]["replicas"]
            child["metadata"]["generation"] = 1
            child["status"] = {
                "observedGeneration": 1,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas if ready else 0,
            }
    return built


def batch_job(stopped: bool) -> Obj:
    job = desired_state(
        parse_service(BATCH, version_specs(index_applications([APP]), NS)), default_catalog()
    )[0]
    job["spec"]["suspend"] = stopped
    return job


# The catalog after cpu.2u4g, the flavor of every version of SVC, left it.
WITHOUT_2U4G = default_catalog().model_copy(
    update={"flavors": [f for f in default_catalog().flavors if f.name != "cpu.2u4g"]}
)
RUNNING = {"phase": "Running", "observedGeneration": 1, "conditions": []}
SECRET_ENV = [{"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]
SVC_SECRET = placed(rts(version("1.0.0", 100, env=SECRET_ENV)))
ONE_VERSION = sorted([f"Deployment/{V1}", f"Service/{V1}", *ROUTER_CHILDREN])


def secret(labels: dict[str, str] | None = None) -> Obj:
    meta: Obj = {"name": "db", "namespace": NS, "labels": labels or {}}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": {"password": "eA=="}}


def namespace(annotations: dict[str, str]) -> Obj:
    return {**NAMESPACE, "metadata": {"name": NS, "annotations": annotations}}


BATCH = placed(bs(), uid="u2")
BATCH_STOPPED = placed(bs(stopped=True), uid="u2", generation=2)

Reconcile = Callable[[FakeKube, Catalog], Outcome | None]


def realtime(kube: FakeKube, catalog: Catalog) -> Outcome | None:
    return reconcile_realtime(kube, catalog, NS, "svc")


def realtime_pass(kube: FakeKube, catalog: Catalog) -> Outcome | None:
    """A pass as the operator runs it: over a view of the caches (here, of everything)."""
    view = view_of(kube.objects.values(), view_scopes(KIND_REALTIME, NS, "svc"))
    return reconcile_realtime(ViewCluster(kube, view), catalog, NS, "svc")


def batch(kube: FakeKube, catalog: Catalog) -> Outcome | None:
    return reconcile_batch(kube, catalog, NS, "job")


def application(kube: FakeKube, catalog: Catalog) -> Outcome | None:
    return reconcile_application(kube, NS, "iris")


@dataclass(frozen=True)
class Row:
    objects: list[Obj]
    reconcile: Reconcile
    applies: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    patches: list[str] = field(default_factory=list)
    # Of the reconciled object: phase, Ready's reason and a fragment of the message.
    phase: str | None = None
    reason: str | None = None
    message: str = ""
    events: list[tuple[str, bool]] = field(default_factory=list)  # (reason, warning)
    catalog: Catalog = field(default_factory=default_catalog)
    missing: tuple[str, ...] = ()
    gone: bool = False  # the object does not exist: nothing happens, no outcome


TABLE = {
    "create applies every child and reports Deploying": Row(
        [NAMESPACE, APP, SVC],
        realtime,
        applies=TWO_VERSIONS,
        phase="Deploying",
        reason="Deploying",
        message="0/2 instances ready",
        events=[("Deploying", False)],
    ),
    "a spec edit prunes the version it dropped": Row(
        [NAMESPACE, APP, SVC_ONE, *children(SVC, ready=True)],
        realtime,
        applies=sorted([f"Deployment/{V1}", f"Service/{V1}", *ROUTER_CHILDREN]),
        deletes=[f"Deployment/{V2}", f"Service/{V2}"],
        phase="Deploying",
        events=[("Deploying", False), ("Pruned", False), ("Pruned", False)],
    ),
    "an invalid spec is Failed and its running children stay": Row(
        [
            NAMESPACE,
            APP,
            placed(rts(version("1.0.0", 60), version("2.0.0", 30))),
            *children(SVC, ready=True),
        ],
        realtime,
        phase="Failed",
        reason="InvalidSpec",
        message="spec.versions",
        events=[("Failed", True)],
    ),
    "over the namespace quota is Failed until a place frees": Row(
        [
            {
                **NAMESPACE,
                "metadata": {"name": NS, "annotations": {ANNOTATION_QUOTA_REALTIME: "1"}},
            },
            APP,
            placed(
                rts(version("1.0.0", 100), name="older"), uid="old", created="2025-01-01T00:00:00Z"
            ),
            SVC,
        ],
        realtime,
        phase="Failed",
        reason="QuotaExceeded",
        message="quota",
        events=[("Failed", True)],
    ),
    "gateway-api without the Gateway API served is RouterUnavailable": Row(
        [NAMESPACE, APP, SVC],
        realtime,
        catalog=GATEWAY,
        missing=("HTTPRoute",),
        phase="Failed",
        reason="RouterUnavailable",
        message="install the Gateway API CRDs",
        events=[("Failed", True)],
    ),
    "the application disappearing blocks the service, its children stay": Row(
        [NAMESPACE, SVC, *children(SVC, ready=True)],
        realtime,
        phase="Failed",
        reason="InvalidSpec",
        message="iris",
        events=[("Failed", True)],
    ),
    "a pass after readiness reports Running without applying": Row(
        [NAMESPACE, APP, placed(SVC, status=DEPLOYING), *children(SVC, ready=True)],
        realtime_pass,
        phase="Running",
        reason="Running",
        message="2/2 instances ready",
        events=[("Running", False)],
    ),
    "a pass before readiness stays Deploying, no event": Row(
        [NAMESPACE, APP, placed(SVC, status=DEPLOYING), *children(SVC, ready=False)],
        realtime_pass,
        phase="Deploying",
        reason="Deploying",
    ),
    "a pass over a generation not applied yet applies it": Row(
        [NAMESPACE, APP, placed(SVC, generation=2, status=DEPLOYING)],
        realtime_pass,
        applies=TWO_VERSIONS,
        phase="Deploying",
        reason="Deploying",
    ),
    "a deleted service is nothing to do": Row([NAMESPACE, APP], realtime, gone=True),
    "a flavor that left the catalog keeps a running service running, untouched": Row(
        [NAMESPACE, APP, placed(SVC, status=RUNNING), *children(SVC, ready=True)],
        realtime,
        catalog=WITHOUT_2U4G,
        phase="Running",
        reason="Running",
        message="the catalog no longer admits this spec",
        events=[("CatalogChanged", True)],
    ),
    "stopped still scales a service the catalog no longer admits": Row(
        [NAMESPACE, APP, placed(rts(stopped=True), generation=2), *children(SVC, ready=True)],
        realtime,
        catalog=WITHOUT_2U4G,
        patches=[f"Deployment/{V1}", f"Deployment/{V2}", "Deployment/svc-router"],
        phase="Stopped",
        events=[("Stopped", False), ("CatalogChanged", True)],
    ),
    "a pass over a service the catalog no longer admits follows its children": Row(
        [NAMESPACE, APP, placed(SVC, status=DEPLOYING), *children(SVC, ready=True)],
        realtime_pass,
        catalog=WITHOUT_2U4G,
        phase="Running",
        events=[("Running", False), ("CatalogChanged", True)],
    ),
    "an unknown flavor on a service never deployed is Failed": Row(
        [NAMESPACE, APP, SVC],
        realtime,
        catalog=WITHOUT_2U4G,
        phase="Failed",
        reason="InvalidSpec",
        message="unknown flavor 'cpu.2u4g'",
        events=[("Failed", True)],
    ),
    "a Secret not marked usable blocks the service": Row(
        [NAMESPACE, APP, SVC_SECRET, secret()],
        realtime,
        phase="Failed",
        reason="SecretNotUsable",
        message="spec.versions[0].env[0]: Secret 'db' is not marked usable",
        events=[("Failed", True)],
    ),
    "a missing Secret blocks the service": Row(
        [NAMESPACE, APP, SVC_SECRET],
        realtime,
        phase="Failed",
        reason="SecretNotUsable",
        message="Secret 'db' does not exist in this namespace",
        events=[("Failed", True)],
    ),
    "a Secret labelled usable is passed": Row(
        [NAMESPACE, APP, SVC_SECRET, secret({LABEL_USABLE: "true"})],
        realtime,
        applies=ONE_VERSION,
        phase="Deploying",
        events=[("Deploying", False)],
    ),
    "a Secret the Namespace lists is passed": Row(
        [namespace({ANNOTATION_USABLE_SECRETS: "other,db"}), APP, SVC_SECRET, secret()],
        realtime,
        applies=ONE_VERSION,
        phase="Deploying",
        events=[("Deploying", False)],
    ),
    "batch storage credentials from a Secret not marked usable: no Job": Row(
        [NAMESPACE, APP, placed(bs(storage={"secretRef": {"name": "db"}}), uid="u2"), secret()],
        batch,
        phase="Failed",
        reason="SecretNotUsable",
        message="spec.storage.secretRef: Secret 'db' is not marked usable",
        events=[("Failed", True)],
    ),
    "batch create applies the Job once": Row(
        [NAMESPACE, APP, BATCH],
        batch,
        applies=["Job/job", "NetworkPolicy/job"],
        phase="Deploying",
        reason="Deploying",
        events=[("Deploying", False)],
    ),
    "batch with its Job already there applies nothing": Row(
        [NAMESPACE, APP, BATCH, batch_job(stopped=False)],
        batch,
        phase="Deploying",
        events=[("Deploying", False)],
    ),
    "batch stopped suspends the running Job": Row(
        [NAMESPACE, APP, BATCH_STOPPED, batch_job(stopped=False)],
        batch,
        patches=["Job/job"],
        phase="Stopped",
        reason="Stopped",
        message="suspended",
        events=[("Stopped", False)],
    ),
    "batch resumed unsuspends the Job": Row(
        [NAMESPACE, APP, placed(bs(), uid="u2", generation=3), batch_job(stopped=True)],
        batch,
        patches=["Job/job"],
        phase="Deploying",
        events=[("Deploying", False)],
    ),
    "batch without its application is Failed, no Job": Row(
        [NAMESPACE, BATCH],
        batch,
        phase="Failed",
        reason="InvalidSpec",
        message="iris",
        events=[("Failed", True)],
    ),
    "an application reports each version Normal": Row(
        [NAMESPACE, APP],
        application,
        reason="AllVersionsNormal",
        events=[("VersionNormal", False), ("VersionNormal", False)],
    ),
}


@pytest.mark.parametrize("name", TABLE)
def test_reconcile(name: str) -> None:
    row = TABLE[name]
    kube = FakeKube(row.objects, missing=row.missing)
    outcome = row.reconcile(kube, row.catalog)
    assert sorted(kube.of("apply")) == sorted(row.applies)
    assert kube.of("delete") == row.deletes
    assert kube.of("patch") == row.patches
    if row.gone:
        assert outcome is None and kube.actions == []
        return
    if row.phase is None and row.reason is None:  # nothing to report
        assert outcome is None and kube.of("status") == []
        return
    assert outcome is not None
    target = outcome.obj
    stored = kube.get(target["apiVersion"], target["kind"], NS, target["metadata"]["name"])
    assert stored is not None
    status = stored.get("status") or {}
    assert status.get("phase") == row.phase
    assert status["observedGeneration"] == stored["metadata"]["generation"]
    ready = condition(status.get("conditions"), "Ready")
    assert ready["observedGeneration"] == stored["metadata"]["generation"]
    if row.reason is not None:
        assert ready["reason"] == row.reason
    assert row.message in status.get("message", ready.get("message", ""))
    assert [(e.reason, e.warning) for e in outcome.events()] == row.events


def test_an_unchanged_status_is_not_written_again() -> None:
    kube = FakeKube([NAMESPACE, APP, SVC])
    reconcile_realtime(kube, default_catalog(), NS, "svc")
    first = kube.of("status")
    again = reconcile_realtime(kube, default_catalog(), NS, "svc")
    assert kube.of("status") == first  # same children, same status: no second write
    assert again is not None and again.events() == []


@pytest.mark.parametrize(
    ("service", "running", "suspend"),
    [(BATCH_STOPPED, False, True), (placed(bs(), uid="u2", generation=3), True, False)],
)
def test_suspension_follows_the_spec(service: Obj, running: bool, suspend: bool) -> None:
    kube = FakeKube([NAMESPACE, APP, service, batch_job(stopped=running)])
    reconcile_batch(kube, default_catalog(), NS, "job")
    job = kube.get("batch/v1", "Job", NS, "job")
    assert job is not None and job["spec"]["suspend"] is suspend


def test_the_catalog_conflict_is_a_condition_until_the_catalog_admits_the_spec() -> None:
    kube = FakeKube([NAMESPACE, APP, placed(SVC, status=RUNNING), *children(SVC, ready=True)])
    reconcile_realtime(kube, WITHOUT_2U4G, NS, "svc")
    stored = kube.get("serving.inferops.dev/v1alpha1", "RealTimeService", NS, "svc")
    assert stored is not None
    conflict = condition(stored["status"]["conditions"], "CatalogConflict")
    assert (conflict["status"], conflict["reason"]) == ("True", "CatalogChanged")
    assert "spec.versions[0].specification: unknown flavor 'cpu.2u4g'" in conflict["message"]
    assert kube.of("apply") == [] and kube.of("delete") == []
    again = reconcile_realtime(kube, WITHOUT_2U4G, NS, "svc")
    assert again is not None and again.events() == []  # one Warning event, not one per pass
    reconcile_realtime(kube, default_catalog(), NS, "svc")  # the flavor is back
    stored = kube.get("serving.inferops.dev/v1alpha1", "RealTimeService", NS, "svc")
    assert stored is not None
    assert condition(stored["status"]["conditions"], "CatalogConflict") == {}
    assert sorted(kube.of("apply")) == TWO_VERSIONS


def test_the_secret_data_is_never_read() -> None:
    """The reconciler asks for the Secret's metadata only (PartialObjectMetadata)."""

    class Recording(FakeKube):
        def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Any:
            assert kind != "Secret", "a Secret was read whole"
            return super().get(api_version, kind, namespace, name)

    kube = Recording([NAMESPACE, APP, SVC_SECRET, secret({LABEL_USABLE: "true"})])
    reconcile_realtime(kube, default_catalog(), NS, "svc")
    assert sorted(kube.of("apply")) == ONE_VERSION
