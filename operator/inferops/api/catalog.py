"""Operator configuration: resource pools, flavors, quotas, router mode, images, batch limits."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, field_validator, model_validator

from inferops.api.base import ApiModel, JsonObject
from inferops.api.names import LABEL_POOL
from inferops.api.paths import FLAVOR_NAME_PATTERN, POOL_NAME_PATTERN

PUBLIC_POOL = "public"


class Toleration(ApiModel):
    """A Kubernetes toleration placed on pods of a dedicated pool."""

    key: str | None = Field(None, description="Taint key.")
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal.")
    value: str | None = Field(None, description="Taint value.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect."
    )
    toleration_seconds: int | None = Field(None, description="For NoExecute taints.")


class Pool(ApiModel):
    """A resource pool: the shared public one, or a dedicated set of nodes."""

    name: str = Field(description="Pool name.", pattern=POOL_NAME_PATTERN, max_length=63)
    type: Literal["public", "dedicated"] = Field(description="public or dedicated.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Labels pinning pods to the pool's nodes."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations for the pool's taints."
    )


class Flavor(ApiModel):
    """A specification: the resources of one instance."""

    name: str = Field(description="Flavor name.", pattern=FLAVOR_NAME_PATTERN, max_length=63)
    cpu: str | int = Field(description='CPU request and limit, e.g. "2" or 500m.')
    memory: str = Field(description="Memory request and limit, e.g. 4Gi.")
    gpu: int = Field(0, ge=0, description="GPUs per instance.")
    gpu_resource: str = Field("nvidia.com/gpu", description="Extended resource name of GPUs.")
    free: bool = Field(False, description="A free flavor serves a single version only.")
    pools: list[str] = Field(description="Pools offering this flavor.", min_length=1)


class Quotas(ApiModel):
    """Per-namespace limits; a Namespace annotation may override each."""

    real_time_services_per_namespace: int = Field(20, ge=0, description="Real-time services.")
    batch_services_per_namespace: int = Field(1000, ge=0, description="Batch services.")
    public_pool_instances_per_namespace: int | None = Field(
        None, ge=0, description="computeNodes of public-pool real-time services; null: no limit."
    )


class GatewayRef(ApiModel):
    """The Gateway that HTTPRoutes attach to in gateway-api mode."""

    name: str = Field(description="Gateway name.")
    namespace: str | None = Field(None, description="Gateway namespace; default: the service's.")
    url: str | None = Field(
        None,
        pattern=r"^https?://[^/\s?#]+(/[^\s?#]*)?$",
        description="Where clients reach the Gateway (for example https://models.example.com). "
        "Every service is routed under /<namespace>/<name>/ there, and status.url says so; "
        "without it status.url stays empty in gateway-api mode.",
    )


class RouterConfig(ApiModel):
    """How traffic is split between versions."""

    mode: Literal["nginx", "gateway-api"] = Field("nginx", description="nginx or gateway-api.")
    gateway: GatewayRef | None = Field(None, description="Required in gateway-api mode.")
    version_header: bool = Field(
        True,
        description="nginx mode: answers carry X-Inferops-Version: <application>:<version>, "
        "the version that answered (never an internal Service name). false: no such header.",
    )

    @model_validator(mode="after")
    def _gateway_mode_needs_gateway(self) -> RouterConfig:
        if self.mode == "gateway-api" and self.gateway is None:
            raise ValueError("router.gateway is required when router.mode is gateway-api")
        return self


class Images(ApiModel):
    """Images the operator puts into child workloads."""

    inferops: str = Field(
        "ghcr.io/inferops/inferops:0.1.0",
        description="Image with the inferops command (batch worker, agent, fetch-model).",
    )
    router: str = Field(
        "ghcr.io/inferops/inferops-router:0.1.0",
        description="Unprivileged nginx image (uid 101, port 8080; see images/router).",
    )


class BatchLimits(ApiModel):
    """Limits of batch inputs (the seed's 10 MB images and 12 MB CSV files by default), of
    the model's answers, and the networks https:// sources may reach."""

    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1, description="Largest image input.")
    max_csv_bytes: int = Field(12 * 1024 * 1024, ge=1, description="Largest CSV input.")
    manifest_max_lines: int = Field(
        10000, ge=1, description="Output manifest lines before continuing in _1, _2, ..."
    )
    max_response_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1,
        description="Largest model answer the batch worker reads (per request); a larger "
        "one fails its source (its CSV row).",
    )
    allowed_networks: list[str] = Field(
        default_factory=list,
        description="CIDRs that https:// batch sources may reach although they are private, "
        "loopback, link-local or otherwise not public (e.g. an in-cluster object store "
        "serving pre-signed URLs). Empty: public addresses only.",
    )

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not an IP network in CIDR form") from None
        return value


class NetworkPolicies(ApiModel):
    """NetworkPolicies beside every service's pods (on by default). Model pods take
    traffic only from their own router, routers only on their port, batch pods none;
    what the pods may reach stays open unless restrictEgress (model fetches, data
    collection and batch workers reach object storage wherever it is)."""

    enabled: bool = Field(True, description="Write the NetworkPolicies (false: none).")
    ingress_from: list[JsonObject] = Field(
        default_factory=list,
        description="NetworkPolicy peers (podSelector, namespaceSelector, ipBlock) that may "
        "reach the service port: of the routers in nginx mode, of the model pods in "
        "gateway-api mode (the Gateway's own pods). Empty: any source.",
    )
    metrics_from: list[JsonObject] = Field(
        default_factory=list,
        description="NetworkPolicy peers that may scrape the routers' metrics port (9090), "
        "for example Prometheus's namespace. Empty: any source.",
    )
    restrict_egress: bool = Field(
        False,
        description="Also limit what the pods may reach: DNS, a router its own model "
        "pods, and the egressTo peers (for example the object store's ipBlock).",
    )
    egress_to: list[JsonObject] = Field(
        default_factory=list,
        description="NetworkPolicy peers every pod may reach when restrictEgress is on.",
    )


class PrometheusConfig(ApiModel):
    """A Prometheus the operator may query for rollout gates (spec.rollout.gates.queries).
    Set by the operator's admin: services name queries, never addresses."""

    url: str = Field(
        pattern=r"^https?://[^/\s?#@]+(/[^\s?#]*)?$",
        max_length=2048,
        description="Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090.",
    )


class Catalog(ApiModel):
    """The whole operator configuration."""

    pools: list[Pool] = Field(description="Resource pools.", min_length=1)
    flavors: list[Flavor] = Field(description="Flavors.", min_length=1)
    quotas: Quotas = Field(default_factory=Quotas, description="Per-namespace quotas.")
    router: RouterConfig = Field(default_factory=RouterConfig, description="Router mode.")
    images: Images = Field(default_factory=Images, description="Child images.")
    batch: BatchLimits = Field(default_factory=BatchLimits, description="Batch limits.")
    network_policies: NetworkPolicies = Field(
        default_factory=NetworkPolicies, description="NetworkPolicies of the services' pods."
    )
    prometheus: PrometheusConfig | None = Field(
        None, description="Where rollout gates' own queries go (none: no such gates)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError("pool names must be unique")
        if sum(1 for p in self.pools if p.type == "public") > 1:
            raise ValueError("at most one pool may be public")
        flavors = [f.name for f in self.flavors]
        if len(set(flavors)) != len(flavors):
            raise ValueError("flavor names must be unique")
        for flavor in self.flavors:
            unknown = sorted(set(flavor.pools) - set(names))
            if unknown:
                raise ValueError(f"flavor {flavor.name} names unknown pools {unknown}")
        return self

    def pool(self, name: str) -> Pool | None:
        return next((p for p in self.pools if p.name == name), None)

    def flavor(self, name: str) -> Flavor | None:
        return next((f for f in self.flavors if f.name == name), None)

    def public_pool(self) -> Pool | None:
        return next((p for p in self.pools if p.type == "public"), None)


def _dedicated(name: str) -> Pool:
    return Pool(name=name, type="dedicated", node_selector={LABEL_POOL: name})


def default_catalog() -> Catalog:
    """The built-in catalog (docs/design.md); the Helm chart ships the same values."""
    every_pool = [PUBLIC_POOL, "pool-a", "pool-b"]
    return Catalog(
        pools=[Pool(name=PUBLIC_POOL, type="public"), _dedicated("pool-a"), _dedicated("pool-b")],
        flavors=[
            Flavor(name="cpu.2u4g", cpu="2", memory="4Gi", pools=every_pool),
            Flavor(name="cpu.4u8g", cpu="4", memory="8Gi", pools=every_pool),
            Flavor(name="free.1u2g", cpu="1", memory="2Gi", free=True, pools=[PUBLIC_POOL]),
            Flavor(name="gpu.1x", cpu="8", memory="32Gi", gpu=1, pools=["pool-a", "pool-b"]),
        ],
    )


class CatalogError(Exception):
    """The catalog file cannot be read or is not a valid catalog."""


MAX_CATALOG_CHARS = 1024 * 1024  # an admin's file, but still read with a bound


def load_catalog(path: str | Path | None) -> Catalog:
    """Reads a catalog YAML file; None gives the built-in default."""
    if path is None:
        return default_catalog()
    try:
        with Path(path).open(encoding="utf-8") as file:
            text = file.read(MAX_CATALOG_CHARS + 1)
        if len(text) > MAX_CATALOG_CHARS:
            raise CatalogError(f"catalog {path}: larger than {MAX_CATALOG_CHARS} characters")
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        # Python's int-digit limit and deep nesting surface from inside the YAML loader.
        problem = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
        raise CatalogError(f"cannot read catalog {path}: {problem}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"catalog {path}: expected a mapping at the top level")
    try:
        return Catalog.model_validate(data)
    except ValueError as exc:
        raise CatalogError(f"catalog {path}: {exc}") from exc
