"""The nginx configuration of a service's router: weighted or sticky split, pinning,
shadows, WebSocket, rate limit, and the access log its agent turns into metrics.

Pure text generation, so the same config runs in the cluster (unprivileged nginx image)
and in the tests and the demo (Debian's nginx in front of local model servers).

How a request finds its version: a pin header naming `<application>:<version>` wins (an
unknown name gets 400); else the split hashes the sticky key when the service has one and
the request carries it, else the request id. A path `/versions/<application>:<version>/...`
goes to that version with the prefix cut off. Shadows are fed by `mirror` subrequests to
the router agent, which answers nginx at once and relays the copy (nginx would otherwise
hold the client's connection until the shadow answered); with pairing, the sampled
requests go through the agent instead, which asks production and the shadows at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from inferops.contract import router as agent

ROUTER_PORT = 8080
HEALTH_PATH = "/inferops-router/healthz"
# Which version answered, as `<application>:<version>` (what status.traffic names), for
# clients measuring a canary. Never the internal Service name, namespace or address.
VERSION_HEADER = "X-Inferops-Version"
VERSIONS_PATH = "/versions/"
AGENT_UPSTREAM = "inferops_agent"
MIRROR_UPSTREAM = "inferops_mirror"
_UNKNOWN = "?"  # $inferops_pinned of a pin header that names no version


@dataclass(frozen=True)
class Backend:
    """One version behind the router: an nginx upstream and its share of requests."""

    name: str  # upstream name, e.g. the version's Service name
    address: str  # host:port
    weight: int  # percent, 0..100
    label: str = ""  # what VERSION_HEADER says for it (default: the name), e.g. iris:1.0.0
    shadow_percent: int | None = None  # a shadow: takes no share, sees this sample

    @property
    def shown(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class RateLimit:
    requests_per_second: int
    burst: int


@dataclass(frozen=True)
class Routing:
    """Pinning and stickiness (spec.routing)."""

    pin_header: str = VERSION_HEADER
    sticky_header: str | None = None
    sticky_cookie: str | None = None


@dataclass(frozen=True)
class AgentLink:
    """Where the router agent listens (`inferops.contract.router`): with it nginx logs
    every request for the metrics and feeds shadows; `pairing` sends shadowed requests
    through the agent so that both answers are recorded together."""

    runtime_dir: str = agent.RUNTIME_DIR
    pairing: bool = False
    log_port: int = agent.DEFAULT_LOG_PORT

    def socket(self, name: str) -> str:
        return f"{self.runtime_dir.rstrip('/')}/{name}"


def header_variable(name: str) -> str:
    """nginx's variable for a request header (names as the API allows: letters, digits,
    dashes)."""
    return "$http_" + name.lower().replace("-", "_")


def _rate(limit: RateLimit, replicas: int) -> str:
    # Every router replica enforces its share of the rate and of the burst, so the service
    # as a whole gets what the spec says.
    per_minute = math.ceil(limit.requests_per_second * 60 / max(replicas, 1))
    return f"{per_minute}r/m"


def _json_body(message: str) -> str:
    body = json.dumps({"error": message})
    if "'" in body or "\\" in body or "$" in body:
        raise ValueError(f"not safe in an nginx string: {body}")
    return f"'{body}\\n'"


def _upstreams(backends: Sequence[Backend], link: AgentLink | None) -> str:
    blocks = [
        f"    upstream {b.name} {{\n        server {b.address} max_fails=0;\n"
        f"        keepalive 64;\n    }}"
        for b in backends
    ]
    if link is not None:
        for name, sock in (
            (AGENT_UPSTREAM, agent.RELAY_SOCKET),
            (MIRROR_UPSTREAM, agent.MIRROR_SOCKET),
        ):
            blocks.append(
                f"    upstream {name} {{\n"
                f"        server unix:{link.socket(sock)} max_fails=0;\n"
                "        keepalive 32;\n    }"
            )
    return "\n".join(blocks)


def _selection(backends: Sequence[Backend], routing: Routing) -> str:
    """The maps choosing $inferops_backend and naming the version behind each upstream."""
    live = [b for b in backends if b.weight > 0 and b.shadow_percent is None]
    if not live:
        raise ValueError("at least one backend needs a weight above 0")
    pins = "\n".join(f'        "{b.shown}" {b.name};' for b in backends)
    key = "${request_id}"
    sticky = ""
    source = (
        header_variable(routing.sticky_header)
        if routing.sticky_header
        else f"$cookie_{routing.sticky_cookie}"
        if routing.sticky_cookie
        else None
    )
    if source is not None:
        # Without the key a request is split at random, not all onto one version.
        sticky = (
            f"    map {source} $inferops_key {{\n"
            f'        "" $request_id;\n        default {source};\n    }}\n'
        )
        key = "$inferops_key"
    split = "\n".join(f"        {b.weight}% {b.name};" for b in live)
    labels = "\n".join(f'        {b.name} "{b.shown}";' for b in backends)
    return (
        f"    map {header_variable(routing.pin_header)} $inferops_pinned {{\n"
        f'        default "{_UNKNOWN}";\n        "" "";\n{pins}\n    }}\n'
        "    map $inferops_pinned $inferops_pin_route {\n"
        f'        "" {agent.ROUTE_SPLIT};\n        default {agent.ROUTE_PINNED};\n    }}\n'
        f"{sticky}"
        f'    split_clients "{key}" $inferops_split {{\n{split}\n    }}\n'
        "    map $inferops_pinned $inferops_backend {\n"
        f'        "" $inferops_split;\n        "{_UNKNOWN}" "";\n'
        "        default $inferops_pinned;\n    }\n"
        "    map $inferops_target $inferops_version {\n"
        f'        default "";\n{labels}\n    }}\n'
    )


def _shadow_maps(shadows: Sequence[Backend], pairing: bool) -> str:
    """$inferops_shadow_<i>: the shadow's upstream when this request is in its sample (never
    a pinned one), else empty; with pairing, where the request goes and what the agent
    is told."""
    out = []
    for i, b in enumerate(shadows):
        percent = b.shadow_percent or 0
        rest = '        * "";\n' if percent < 100 else ""
        out.append(
            f'    split_clients "${{request_id}}shadow{i}" $inferops_sample_{i} {{\n'
            f"        {percent}% {b.name};\n{rest}    }}\n"
            f"    map $inferops_pinned $inferops_shadow_{i} {{\n"
            f'        "" $inferops_sample_{i};\n        default "";\n    }}\n'
        )
    if pairing and shadows:
        joined = "".join(f"$inferops_shadow_{i}" for i in range(len(shadows)))
        spaced = " ".join(f"$inferops_shadow_{i}" for i in range(len(shadows)))
        out.append(
            f'    map "{joined}" $inferops_paired {{\n'
            f'        "" "";\n        default "{spaced}";\n    }}\n'
            "    map $inferops_paired $inferops_proxy {\n"
            f'        "" $inferops_backend;\n        default {AGENT_UPSTREAM};\n    }}\n'
            "    map $inferops_paired $inferops_production {\n"
            '        "" "";\n        default $inferops_backend;\n    }\n'
        )
    return "".join(out)


def _proxy_common(websocket: bool, version_header: bool) -> str:
    if websocket:
        connection = (
            "            proxy_set_header Upgrade $http_upgrade;\n"
            "            proxy_set_header Connection $inferops_connection;\n"
            "            proxy_read_timeout 3600s;\n"
            "            proxy_send_timeout 3600s;\n"
        )
    else:
        connection = (
            '            proxy_set_header Connection "";\n            proxy_read_timeout 300s;\n'
        )
    header = (
        f"            add_header {VERSION_HEADER} $inferops_version always;\n"
        if version_header
        else ""
    )
    return (
        "            proxy_http_version 1.1;\n"
        f"{connection}"
        "            proxy_set_header Host $host;\n"
        "            proxy_set_header X-Request-Id $request_id;\n"
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "            proxy_connect_timeout 5s;\n"
        f"{header}"
    )


def _version_locations(backends: Sequence[Backend], common: str, limit_rule: str, log: str) -> str:
    known = ", ".join(b.shown for b in backends)
    out = [
        f"        location ^~ {VERSIONS_PATH} {{\n{log}"
        f"            set $inferops_route {agent.ROUTE_PINNED};\n"
        '            set $inferops_target "";\n'
        "            default_type application/json;\n"
        f"            return 404 {_json_body(f'no such version; this service has: {known}')};\n"
        "        }\n"
    ]
    for b in backends:
        for match, path in (("^~", f"{VERSIONS_PATH}{b.shown}/"), ("=", VERSIONS_PATH + b.shown)):
            out.append(
                f"        location {match} {path} {{\n{log}{limit_rule}"
                f"            set $inferops_route {agent.ROUTE_PINNED};\n"
                f"            set $inferops_target {b.name};\n"
                f"            proxy_pass http://{b.name}/;\n{common}        }}\n"
            )
    return "".join(out)


def _mirror_locations(shadows: Sequence[Backend]) -> str:
    out = []
    for i, _ in enumerate(shadows):
        out.append(
            f"        location = /inferops-mirror/{i} {{\n"
            "            internal;\n"
            f'            if ($inferops_shadow_{i} = "") {{\n                return 204;\n'
            "            }\n"
            f"            proxy_pass http://{MIRROR_UPSTREAM};\n"
            "            proxy_http_version 1.1;\n"
            '            proxy_set_header Connection "";\n'
            "            proxy_set_header Host $host;\n"
            "            proxy_set_header X-Request-Id $request_id;\n"
            f"            proxy_set_header {agent.SHADOW_HEADER} $inferops_shadow_{i};\n"
            f"            proxy_set_header {agent.ORIGINAL_URI_HEADER} $request_uri;\n"
            "            proxy_connect_timeout 1s;\n"
            "        }\n"
        )
    return "".join(out)


def nginx_config(
    backends: Sequence[Backend],
    *,
    websocket: bool = False,
    limit: RateLimit | None = None,
    replicas: int = 1,
    listen: str = str(ROUTER_PORT),
    runtime_dir: str = "/tmp",
    worker_processes: str = "auto",
    max_body: str = "16m",
    version_header: bool = True,
    routing: Routing | None = None,
    link: AgentLink | None = None,
    note: str = "",
) -> str:
    """nginx.conf for one service. Versions with weight 0 get no share (pinning still
    reaches them). With `version_header`, answers carry VERSION_HEADER: the label of the
    version that answered, never the upstream's name or address. `link` (the router agent)
    is required for shadows."""
    routing = routing or Routing()
    shadows = [b for b in backends if b.shadow_percent is not None]
    if shadows and link is None:
        raise ValueError("shadow versions need the router agent (link)")
    if shadows and websocket:
        raise ValueError("shadow versions cannot be used on a websocket service")
    pairing = link is not None and link.pairing and bool(shadows)
    limit_zone = limit_rule = ""
    if limit is not None:
        limit_zone = (
            '    map $uri $inferops_limit_key { default "service"; }\n'
            "    limit_req_zone $inferops_limit_key zone=service:1m "
            f"rate={_rate(limit, replicas)};\n"
            "    limit_req_status 429;\n"
            # A refused request is expected under load, not an error worth a log line each.
            "    limit_req_log_level notice;\n"
        )
        burst = math.ceil(limit.burst / max(replicas, 1))
        limit_rule = f"            limit_req zone=service burst={burst} nodelay;\n"
    upgrade_map = (
        "    map $http_upgrade $inferops_connection {\n"
        "        default upgrade;\n        '' '';\n    }\n"
        if websocket
        else ""
    )
    log_format = log = status_server = ""
    if link is not None:
        log_format = (
            "    log_format inferops_metrics "
            "'$inferops_route $inferops_version $status $request_time $upstream_status';\n"
        )
        log = (
            f"            access_log syslog:server=127.0.0.1:{link.log_port},"
            f"tag={agent.LOG_TAG},nohostname inferops_metrics;\n"
        )
        status_server = (
            "\n    server {\n"
            f"        listen unix:{link.socket(agent.STATUS_SOCKET)};\n"
            f"        location = {agent.STATUS_PATH} {{\n"
            "            access_log off;\n            stub_status;\n        }\n"
            "        location / {\n            access_log off;\n            return 404;\n"
            "        }\n    }\n"
        )
    common = _proxy_common(websocket, version_header)
    mirrors = (
        ""
        if pairing
        else "".join(f"            mirror /inferops-mirror/{i};\n" for i in range(len(shadows)))
    )
    target = "$inferops_proxy" if pairing else "$inferops_backend"
    paired_headers = (
        f"            proxy_set_header {agent.PRODUCTION_HEADER} $inferops_production;\n"
        f"            proxy_set_header {agent.PAIRED_SHADOWS_HEADER} $inferops_paired;\n"
        if pairing
        else ""
    )
    mirror_locations = "" if pairing else _mirror_locations(shadows)
    known = ", ".join(b.shown for b in backends)
    unknown_pin = _json_body(
        f"{routing.pin_header} names no version of this service; it has: {known}"
    )
    if note and not note.replace(" ", "").replace(":", "").replace(".", "").isalnum():
        raise ValueError(f"not a safe config comment: {note!r}")
    header = f"# {note}\n" if note else ""
    return f"""# Generated by inferops. Do not edit: the operator rewrites it.
{header}worker_processes {worker_processes};
pid {runtime_dir}/nginx.pid;
error_log stderr warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path {runtime_dir}/client_temp;
    proxy_temp_path {runtime_dir}/proxy_temp;
    fastcgi_temp_path {runtime_dir}/fastcgi_temp;
    uwsgi_temp_path {runtime_dir}/uwsgi_temp;
    scgi_temp_path {runtime_dir}/scgi_temp;
    client_max_body_size {max_body};
    server_tokens off;
    keepalive_requests 10000;
    # Upstream names (Service names) are up to 63 characters: wider hash buckets.
    map_hash_bucket_size 128;

{_upstreams(backends, link)}

{_selection(backends, routing)}{_shadow_maps(shadows, pairing)}{upgrade_map}{limit_zone}{log_format}
    server {{
        listen {listen};

        location = {HEALTH_PATH} {{
            access_log off;
            return 200 "ok\\n";
        }}

        location / {{
{log}            set $inferops_route $inferops_pin_route;
            set $inferops_target $inferops_backend;
            default_type application/json;
            if ($inferops_pinned = "{_UNKNOWN}") {{
                return 400 {unknown_pin};
            }}
{limit_rule}{mirrors}            proxy_pass http://{target};
{paired_headers}{common}        }}

{_version_locations(backends, common, limit_rule, log)}{mirror_locations}    }}
{status_server}}}
"""
