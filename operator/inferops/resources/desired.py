"""The desired state of one service: its kind's children, from the object, its parsed spec,
the app versions it names and the catalog.

The one derivation of children: reconcile applies it, `inferops render` prints it and the
demo runs it, so what a user previews is what the operator applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inferops.api.application import AppVersion
from inferops.api.batch import BatchServiceSpec
from inferops.api.catalog import Catalog
from inferops.api.names import KIND_BATCH, KIND_REALTIME
from inferops.api.realtime import RealTimeServiceSpec
from inferops.resources.batch import BatchInputs, batch_job
from inferops.resources.network import batch_policies
from inferops.resources.realtime import Inputs, realtime_children

# (application, version) -> that version's spec, for every version the service names.
AppVersions = Mapping[tuple[str, str], AppVersion]
Spec = RealTimeServiceSpec | BatchServiceSpec
SPEC_MODELS: dict[str, type[RealTimeServiceSpec] | type[BatchServiceSpec]] = {
    KIND_REALTIME: RealTimeServiceSpec,
    KIND_BATCH: BatchServiceSpec,
}
# What reconcile owns (and prunes) per kind.
CHILD_KINDS: dict[str, tuple[tuple[str, str], ...]] = {
    KIND_REALTIME: (
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "ConfigMap"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
    ),
    KIND_BATCH: (("batch/v1", "Job"), ("networking.k8s.io/v1", "NetworkPolicy")),
}


@dataclass(frozen=True)
class Service:
    """A service object with its spec parsed once, and the app versions it runs."""

    obj: Mapping[str, Any]
    spec: Spec
    versions: AppVersions
    router_note: str = ""  # a line of the router config (a rollout's step: a new config)
    compare_shadows: bool = False  # a rollout's shadow step: pair its answers to count them

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])


def parse_service(obj: Mapping[str, Any], lookup: AppVersions) -> Service:
    """The service with its spec parsed, and the versions it names taken from `lookup`.

    Only for objects that passed validation: an invalid spec raises pydantic's
    ValidationError and a version missing from `lookup` raises KeyError.
    """
    spec = SPEC_MODELS[str(obj["kind"])].model_validate(obj["spec"])
    if isinstance(spec, BatchServiceSpec):
        keys = [(spec.application, spec.version)]
    else:
        keys = [(e.application, e.version) for e in spec.versions]
    return Service(obj, spec, {key: lookup[key] for key in keys})


def realtime_inputs(service: Service, catalog: Catalog) -> Inputs:
    assert isinstance(service.spec, RealTimeServiceSpec)
    return Inputs(
        service.obj,
        service.spec,
        service.versions,
        catalog,
        service.router_note,
        service.compare_shadows,
    )


def batch_inputs(service: Service, catalog: Catalog) -> BatchInputs:
    assert isinstance(service.spec, BatchServiceSpec)
    version = service.versions[(service.spec.application, service.spec.version)]
    return BatchInputs(service.obj, service.spec, version, catalog)


def desired_state(service: Service, catalog: Catalog) -> list[dict[str, Any]]:
    """Every child the operator applies for this service."""
    if isinstance(service.spec, BatchServiceSpec):
        policies = catalog.network_policies
        extra = batch_policies(service.obj, policies) if policies.enabled else []
        return [batch_job(batch_inputs(service, catalog)), *extra]
    return realtime_children(realtime_inputs(service, catalog))
