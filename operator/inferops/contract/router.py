"""`inferops router-agent` as both planes see it: the file the operator writes next to the
router's nginx.conf, and the sockets nginx and the agent share.

The agent runs beside nginx in every router pod. It turns nginx's access log (syslog
datagrams on a local socket) into per-version Prometheus metrics, relays mirrored requests
to shadow versions so that nginx never waits for a shadow, and, with data collection, sends
the sampled requests to production and shadow at once and writes both answers as one line.
The operator builds `RouterAgentConfig` from the spec (`inferops.resources.realtime`); the
agent reads it back with the same model, so neither side can name a field the other lacks.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

COMMAND = "router-agent"
CONFIG_FILE = "router.json"  # key of the router ConfigMap, beside nginx.conf
RUNTIME_DIR = "/run/inferops"  # an emptyDir shared by nginx and the agent
# nginx -> agent: access log lines, syslog over UDP on the pod's loopback. Not a unix
# datagram socket: those queue 10 datagrams (net.unix.max_dgram_qlen, not settable in a
# pod), a UDP socket as many as its receive buffer holds.
DEFAULT_LOG_PORT = 5140
RELAY_SOCKET = "relay.sock"  # nginx -> agent: paired requests (HTTP)
MIRROR_SOCKET = "mirror.sock"  # nginx -> agent: copies for shadows (HTTP, answered 204)
STATUS_SOCKET = "status.sock"  # agent -> nginx: stub_status, for requests in flight
LOG_TAG = "inferops"
STATUS_PATH = "/inferops-router/status"
METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
DEFAULT_METRICS_PORT = 9090

# Headers nginx sets on what it hands the agent; nginx always overwrites them (an empty
# value removes them), so a client cannot forge one.
SHADOW_HEADER = "X-Inferops-Shadow"  # mirror: the upstream of the shadow to relay to
PRODUCTION_HEADER = "X-Inferops-Production"  # pairing: the upstream that answers the client
PAIRED_SHADOWS_HEADER = "X-Inferops-Shadows"  # pairing: upstreams of the sampled shadows
ORIGINAL_URI_HEADER = "X-Inferops-Original-Uri"  # mirror: the client's request URI

# Routes, as the metrics label them: split by the ratios, pinned by header or path, or a
# copy sent to a shadow.
ROUTE_SPLIT = "split"
ROUTE_PINNED = "pinned"
ROUTE_SHADOW = "shadow"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Target(_Model):
    """One version behind the router."""

    upstream: str = Field(min_length=1, max_length=128)  # nginx upstream name
    label: str = Field(min_length=1, max_length=200)  # <application>:<version>
    address: str = Field(min_length=1, max_length=300)  # host:port
    shadow_percent: int | None = Field(None, ge=1, le=100)  # a shadow's sample


class Pairing(_Model):
    """Shadowed requests go through the agent, which compares both answers (the agreement
    metrics) and, with an output (data collection), writes them side by side."""

    output: str | None = Field(None, min_length=1, max_length=2048)
    sample_ratio: float = Field(1.0, ge=0, le=1)
    endpoint: str | None = None
    region: str | None = None
    redact_headers: tuple[str, ...] = ()
    redact_query_parameters: tuple[str, ...] = ()


class RouterAgentConfig(_Model):
    """Everything the router agent runs with."""

    service: str = Field(min_length=1, max_length=253)
    runtime_dir: str = RUNTIME_DIR
    metrics_port: int = Field(DEFAULT_METRICS_PORT, ge=1, le=65535)
    metrics_host: str = "0.0.0.0"
    log_port: int = Field(DEFAULT_LOG_PORT, ge=1, le=65535)
    targets: tuple[Target, ...] = Field(max_length=64)
    pairing: Pairing | None = None
    # A shadow is slower than production, or down: at most this many copies wait for it,
    # the rest are dropped (and counted) so that memory stays bounded.
    max_shadow_in_flight: int = Field(64, ge=1, le=10_000)
    shadow_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1)
    max_capture_bytes: int = Field(1024 * 1024, ge=1)

    def socket(self, name: str) -> Path:
        return Path(self.runtime_dir) / name

    def shadows(self) -> tuple[Target, ...]:
        return tuple(t for t in self.targets if t.shadow_percent is not None)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_defaults=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RouterAgentConfig:
        return cls.model_validate_json(text, strict=False)
