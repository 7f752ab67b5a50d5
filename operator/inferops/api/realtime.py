"""RealTimeService: an always-on endpoint splitting traffic between application versions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints

from inferops.api.base import (
    MAX_ENV,
    ApiModel,
    Condition,
    EnvVar,
    StorageSpec,
    cel,
    rules,
)
from inferops.api.paths import FLAVOR_NAME_PATTERN, POOL_NAME_PATTERN, STORAGE_PATH_PATTERN
from inferops.api.refs import ApplicationRef, VersionRef
from inferops.api.rollout import Rollout, RolloutStatus

MAX_SERVICE_VERSIONS = 20
MAX_COMPUTE_NODES = 1000
TIMEOUT_MIN, TIMEOUT_MAX, TIMEOUT_DEFAULT = 3, 120, 20

MSG_RATIO_SUM = "traffic ratios must sum to exactly 100, got {total}"
MSG_UNIQUE_PAIRS = "each (application, version) pair may appear only once"
MSG_MULTIPOOL_POOLS = "multiPoolLoadBalancing.pools must name exactly two distinct dedicated pools"
MSG_MULTIPOOL_NODES = (
    "with multiPoolLoadBalancing enabled, every version's computeNodes must be an even "
    "number of at least 2"
)
MSG_WEBSOCKET_LIMIT = "trafficLimit cannot be set on a websocket service"
MSG_WEBSOCKET_COLLECTION = "dataCollection cannot be enabled on a websocket service"
MSG_WEBSOCKET_IMMUTABLE = "websocket cannot be changed after creation"
MSG_COLLECTION_OUTPUT = "dataCollection.outputPath is required when data collection is enabled"
MAX_SHADOWS = 3
MSG_SHADOW_RATIO = "a shadow version takes no share of the traffic: trafficRatio must be 0"
MSG_SHADOW_COUNT = f"at most {MAX_SHADOWS} versions may be shadows"
MSG_WEBSOCKET_SHADOW = "shadow versions cannot be used on a websocket service"
MSG_STICKY_ONE = "stickyBy names exactly one of header or cookie"
DEFAULT_PIN_HEADER = "X-Inferops-Version"
MSG_ROLLOUT_VERSION = "rollout.version must name one of the service's versions, not a shadow"
MSG_ROLLOUT_END = (
    "the last step's percent must be the rollout version's trafficRatio (where it ends)"
)
MSG_WEBSOCKET_ROLLOUT = "a rollout cannot be used on a websocket service"
ROLLOUT_VERSION = (
    "self.versions.exists(v, v.application + ':' + v.version == self.rollout.version "
    "&& !has(v.shadow)"
)

RATIO_SUM = "self.versions.map(v, v.trafficRatio).sum()"


def cel_ratio_message() -> str:
    """A messageExpression stating the sum.

    `string(int)` has no size bound for the API server's cost estimator, so the digits are
    picked from a constant list instead (the sum is at most 20 x 100 = 2000).
    """
    digits = "[" + ", ".join(f"'{d}'" for d in range(10)) + "]"
    parts = [
        f"({RATIO_SUM} >= {10**p} ? {digits}[{RATIO_SUM} / {10**p} % 10] : '')" for p in (3, 2, 1)
    ]
    parts.append(f"{digits}[{RATIO_SUM} % 10]")
    prefix = MSG_RATIO_SUM.format(total="")
    return f"'{prefix}' + " + " + ".join(parts)


RealTimePhase = Literal["Deploying", "Running", "Abnormal", "Stopped", "Failed"]


PoolName = Annotated[str, StringConstraints(pattern=POOL_NAME_PATTERN, max_length=63)]
# What inferops agent accepts (inferops.contract.agent): an RFC 9110 token; a query parameter
# name as written in the URL, without separators.
HeaderName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", min_length=1, max_length=128)
]
QueryParameterName = Annotated[
    str, StringConstraints(pattern=r"^[^\s,&=#]+$", min_length=1, max_length=128)
]
MAX_REDACTED_NAMES = 32
# The router reads these through nginx variables ($http_x_user, $cookie_session), whose
# names end at anything but letters, digits and underscores (a header's dashes become
# underscores; a cookie name cannot have one).
RouterHeaderName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$", max_length=64)
]
CookieName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]+$", max_length=64)]


def timeout_field() -> Any:
    """timeoutMinutes, shared by real-time and batch versions."""
    return Field(
        TIMEOUT_DEFAULT,
        ge=TIMEOUT_MIN,
        le=TIMEOUT_MAX,
        description="Minutes allowed for deployment plus model start-up (3 to 120).",
    )


class Shadow(ApiModel):
    """A version that sees copies of production requests and whose answers nobody sees."""

    sample_percent: int = Field(
        ge=1,
        le=100,
        description="Percent of the requests split between the other versions that are "
        "also sent to this one (pinned requests are never mirrored).",
    )


class ServiceVersion(ApiModel):
    """An AI application version deployed by the service, with its share of the traffic."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "!has(self.shadow) || self.trafficRatio == 0",
                MSG_SHADOW_RATIO,
                field_path=".trafficRatio",
            )
        )
    )

    application: ApplicationRef
    version: VersionRef
    traffic_ratio: int = Field(
        0,
        description="Percent of requests sent to this version; all versions sum to 100 "
        "(0: reachable only by pinning, or as a shadow).",
        ge=0,
        le=100,
    )
    specification: str = Field(
        description="Flavor name from the operator's catalog, e.g. cpu.2u4g.",
        pattern=FLAVOR_NAME_PATTERN,
        max_length=63,
    )
    compute_nodes: int = Field(
        1, ge=1, le=MAX_COMPUTE_NODES, description="Number of instances of this version."
    )
    env: list[EnvVar] | None = Field(
        None,
        description="Environment variables; pass credentials with valueFrom.secretKeyRef.",
        max_length=MAX_ENV,
    )
    timeout_minutes: int = timeout_field()
    shadow: Shadow | None = Field(
        None,
        description="Makes this a shadow version: it takes no share of the traffic "
        "(trafficRatio 0) and the router mirrors a sample of the requests to it, "
        "discarding its answers.",
    )


class MultiPoolLoadBalancing(ApiModel):
    """Spread every version evenly over two dedicated pools."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "!self.enabled || (has(self.pools) && self.pools.size() == 2 "
                "&& self.pools[0] != self.pools[1])",
                MSG_MULTIPOOL_POOLS,
                field_path=".pools",
            )
        )
    )

    enabled: bool = Field(False, description="Turns multi-pool load balancing on.")
    pools: list[PoolName] | None = Field(
        None,
        description="The two dedicated pools; each gets half of every version's nodes.",
        max_length=8,
    )


class TrafficLimit(ApiModel):
    """Request rate limit enforced by the router (requests beyond it get 429)."""

    requests_per_second: int = Field(ge=1, le=1_000_000, description="Sustained rate.")
    burst: int = Field(0, ge=0, le=1_000_000, description="Requests allowed above the rate.")


class DataCollection(ApiModel):
    """Writes sampled request/response pairs as JSON lines to object storage."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "!self.enabled || has(self.outputPath)",
                MSG_COLLECTION_OUTPUT,
                field_path=".outputPath",
            )
        )
    )

    enabled: bool = Field(False, description="Turns data collection on.")
    sample_ratio: float = Field(1.0, ge=0, le=1, description="Fraction of requests kept.")
    output_path: str | None = Field(
        None,
        description="Folder receiving the JSON lines (obs://, s3:// or local).",
        pattern=STORAGE_PATH_PATTERN,
        max_length=2048,
    )
    redact_headers: list[HeaderName] | None = Field(
        None,
        description="Request and response headers whose values records show as [REDACTED] "
        "(case-insensitive), in addition to authorization, cookie, set-cookie, "
        "proxy-authorization and x-api-key. The model still receives them.",
        max_length=MAX_REDACTED_NAMES,
    )
    redact_query_parameters: list[QueryParameterName] | None = Field(
        None,
        description="Query parameters whose values records show as [REDACTED] "
        "(case-insensitive), in addition to api_key, apikey, key, token, access_token, "
        "password, secret, sig and signature. The model still receives them.",
        max_length=MAX_REDACTED_NAMES,
    )


class StickyBy(ApiModel):
    """What keeps one client on one version: the split hashes this key instead of
    picking at random, so a key always lands on the same version while the shares
    still hold over many keys. Requests without the key are split at random."""

    model_config = ConfigDict(
        json_schema_extra=rules(cel("has(self.header) != has(self.cookie)", MSG_STICKY_ONE))
    )

    header: RouterHeaderName | None = Field(
        None, description="A request header, e.g. X-User-Id (letters, digits and dashes)."
    )
    cookie: CookieName | None = Field(
        None, description="A cookie name, e.g. session (letters, digits and underscores)."
    )


class Routing(ApiModel):
    """How one request finds its version, beyond the traffic split."""

    pin_header: RouterHeaderName = Field(
        DEFAULT_PIN_HEADER,
        description="A request carrying <application>:<version> in this header goes to that "
        "version, even one at 0% or a shadow; an unknown value gets 400. Every version is "
        "also reachable at /versions/<application>:<version>/ on the service.",
    )
    sticky_by: StickyBy | None = Field(
        None, description="Hash this header or cookie instead of splitting at random."
    )


class RealTimeServiceSpec(ApiModel):
    """Desired state of a RealTimeService."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                f"{RATIO_SUM} == 100",
                message_expression=cel_ratio_message(),
                field_path=".versions",
            ),
            cel(
                "self.versions.all(a, self.versions.exists_one(b, "
                "b.application == a.application && b.version == a.version))",
                MSG_UNIQUE_PAIRS,
                field_path=".versions",
            ),
            cel(
                "!has(self.multiPoolLoadBalancing) || !self.multiPoolLoadBalancing.enabled || "
                "self.versions.all(v, v.computeNodes >= 2 && v.computeNodes % 2 == 0)",
                MSG_MULTIPOOL_NODES,
                field_path=".versions",
            ),
            cel(
                "!self.websocket || !has(self.trafficLimit)",
                MSG_WEBSOCKET_LIMIT,
                field_path=".trafficLimit",
            ),
            cel(
                "!self.websocket || !has(self.dataCollection) || !self.dataCollection.enabled",
                MSG_WEBSOCKET_COLLECTION,
                field_path=".dataCollection",
            ),
            cel(
                "!self.websocket || self.versions.all(v, !has(v.shadow))",
                MSG_WEBSOCKET_SHADOW,
                field_path=".versions",
            ),
            cel(
                f"self.versions.filter(v, has(v.shadow)).size() <= {MAX_SHADOWS}",
                MSG_SHADOW_COUNT,
                field_path=".versions",
            ),
            cel(
                f"!has(self.rollout) || {ROLLOUT_VERSION})",
                MSG_ROLLOUT_VERSION,
                field_path=".rollout.version",
            ),
            cel(
                f"!has(self.rollout) || !{ROLLOUT_VERSION}) || self.versions.exists(v, "
                "v.application + ':' + v.version == self.rollout.version && v.trafficRatio "
                "== self.rollout.steps[self.rollout.steps.size() - 1].percent)",
                MSG_ROLLOUT_END,
                field_path=".rollout.steps",
            ),
            cel(
                "!self.websocket || !has(self.rollout)",
                MSG_WEBSOCKET_ROLLOUT,
                field_path=".rollout",
            ),
        )
    )

    description: str = Field("", description="What the service is for.", max_length=1024)
    resource_pool: str = Field(
        "public",
        description="public, or a dedicated pool from the catalog. Ignored when "
        "multiPoolLoadBalancing is enabled.",
        pattern=POOL_NAME_PATTERN,
        max_length=63,
    )
    multi_pool_load_balancing: MultiPoolLoadBalancing | None = Field(
        None, description="Deploy into two dedicated pools and balance between them."
    )
    versions: list[ServiceVersion] = Field(
        description="AI application versions and configuration.",
        min_length=1,
        max_length=MAX_SERVICE_VERSIONS,
    )
    websocket: bool = Field(
        False,
        description="Serve WebSocket. Every version's app must speak it; excludes "
        "trafficLimit and dataCollection; cannot change after creation.",
        json_schema_extra=rules(cel("self == oldSelf", MSG_WEBSOCKET_IMMUTABLE)),
    )
    routing: Routing | None = Field(
        None, description="Version pinning and sticky assignment (nginx router)."
    )
    rollout: Rollout | None = Field(
        None,
        description="Introduce one version by steps behind metric gates; the versions' "
        "ratios say where it ends, status.rollout where it stands.",
    )
    traffic_limit: TrafficLimit | None = Field(None, description="Request rate limit.")
    data_collection: DataCollection | None = Field(None, description="Request/response capture.")
    storage: StorageSpec | None = Field(None, description="Object-storage access.")
    stopped: bool = Field(
        False, description="Scale to zero and report Stopped (still counts against quota)."
    )

    def routing_or_default(self) -> Routing:
        return self.routing if self.routing is not None else Routing()

    def shadows(self) -> list[ServiceVersion]:
        return [v for v in self.versions if v.shadow is not None]


class ServiceVersionStatus(ApiModel):
    """Observed state of one version."""

    application: str = Field(description="Application name.")
    version: str = Field(description="Application version.")
    traffic_ratio: int = Field(description="Percent of traffic routed to it.")
    ready_nodes: int = Field(0, description="Instances ready to serve.")
    desired_nodes: int = Field(0, description="Instances asked for.")


class RealTimeServiceStatus(ApiModel):
    """Observed state of a RealTimeService."""

    phase: RealTimePhase | None = Field(None, description="Lifecycle phase.")
    url: str | None = Field(None, description="In-cluster URL of the service.")
    traffic: str = Field("", description="Traffic split, e.g. iris:1.0.0=70,iris:2.0.0=30.")
    ready: str = Field("", description="Ready instances out of desired, e.g. 3/3.")
    versions: list[ServiceVersionStatus] = Field(default_factory=list, description="Per version.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Progressing.")
    observed_generation: int | None = Field(None, description="Generation last reconciled.")
    message: str = Field("", description="Why the service is in its phase.")
    rollout: RolloutStatus | None = Field(None, description="Where spec.rollout stands.")
