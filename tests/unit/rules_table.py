"""The validation table: valid and invalid objects for every rule in the seeds and docs/design.md.

`layer` says which validator must catch a row: "schema" rows are refused by the CRD itself
(OpenAPI constraints and CEL) and by the Python validation alike; "catalog" and
"reference" rows need the operator's catalog or the referenced AIApplication, so only the
Python validation (CLI, webhook, handlers) can refuse them and the CRD must accept them;
"cluster" rows are refused for cluster objects only (local paths, credentials in URLs):
the models, and so the CRD, accept them because `inferops batch run` runs the same spec
on a workstation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

API = "serving.inferops.dev/v1alpha1"
Obj = dict[str, Any]


def app(
    name: str = "iris", versions: tuple[str, ...] = ("1.0.0", "2.0.0"), websocket: bool = False
) -> Obj:
    api = {
        "method": "post",
        "url": "/",
        "request": {
            "Content-type": "application/json",
            "data": {"type": "object", "properties": {"x": {"type": "number"}}},
        },
    }
    return {
        "apiVersion": API,
        "kind": "AIApplication",
        "metadata": {"name": name},
        "spec": {
            "versions": [
                {
                    "version": v,
                    "image": "model:1",
                    "websocket": websocket,
                    "apis": [copy.deepcopy(api)],
                }
                for v in versions
            ]
        },
    }


WS_TYPE = "application/json; transport=websocket"


def stream_app() -> Obj:
    """A WebSocket app: 1.0.0 declares POST / then the WebSocket API GET /ws, 2.0.0 only /ws."""
    obj = app("stream", ("1.0.0", "2.0.0"), websocket=True)
    ws = {
        "method": "get",
        "url": "/ws",
        "request": {
            "Content-type": WS_TYPE,
            "data": {"type": "object", "properties": {"x": {"type": "number"}}},
        },
    }
    obj["spec"]["versions"][0]["apis"].append(copy.deepcopy(ws))
    obj["spec"]["versions"][1]["apis"] = [copy.deepcopy(ws)]
    return obj


def ws_api(change: Callable[[Obj], Any]) -> Obj:
    """stream_app() with its first version's WebSocket API changed."""
    return edit(stream_app(), lambda o: change(o["spec"]["versions"][0]["apis"][1]))


def edit(obj: Obj, change: Callable[[Obj], Any]) -> Obj:
    obj = copy.deepcopy(obj)
    change(obj)
    return obj


APPS: list[Obj] = [
    app(),
    app("echo", ("1.0.0",), websocket=True),
    {
        "apiVersion": API,
        "kind": "AIApplication",
        "metadata": {"name": "broken"},
        "spec": {"versions": [{"version": "1.0.0", "image": "model:1"}]},
    },
    stream_app(),
    app("many", ("1.0.0", "2.0.0", "2.0.1", "2.0.2", "2.0.3")),
    edit(app("ledger"), lambda o: o["spec"]["versions"][1]["apis"][0].update(idempotent=False)),
]


def version(v: str = "1.0.0", ratio: int = 100, **extra: Any) -> Obj:
    return {
        "application": "iris",
        "version": v,
        "trafficRatio": ratio,
        "specification": "cpu.2u4g",
        **extra,
    }


def rts(*versions: Obj, name: str = "svc", **spec: Any) -> Obj:
    chosen = list(versions) or [version("1.0.0", 70), version("2.0.0", 30)]
    return {
        "apiVersion": API,
        "kind": "RealTimeService",
        "metadata": {"name": name},
        "spec": {"versions": chosen, **spec},
    }


def multipool(*nodes: int, pools: list[str] | None = None) -> Obj:
    chosen = pools if pools is not None else ["pool-a", "pool-b"]
    ratios = [100] if len(nodes) == 1 else [50, 50]
    versions = [
        version(v, r, computeNodes=n)
        for v, r, n in zip(("1.0.0", "2.0.0"), ratios, nodes, strict=False)
    ]
    return rts(*versions, multiPoolLoadBalancing={"enabled": True, "pools": chosen})


def bs(name: str = "job", **spec: Any) -> Obj:
    base = {
        "application": "iris",
        "version": "1.0.0",
        "inputPath": "s3://bucket/in/",
        "outputPath": "s3://bucket/out/",
        "specification": "cpu.2u4g",
    }
    return {
        "apiVersion": API,
        "kind": "BatchService",
        "metadata": {"name": name},
        "spec": {**base, **spec},
    }


def echo_rts(websocket: bool, **spec: Any) -> Obj:
    return rts(version() | {"application": "echo"}, websocket=websocket, **spec)


@dataclass(frozen=True)
class Row:
    id: str
    obj: Obj
    expected: list[tuple[str, str]] = field(default_factory=list)
    layer: Literal["schema", "catalog", "reference", "cluster"] = "schema"
    old: Obj | None = None

    @property
    def valid(self) -> bool:
        return not self.expected


R, T = "spec.versions", "traffic ratios must sum to exactly 100"
SHADOW = {"samplePercent": 10}


CANARY: Obj = {
    "version": "iris:2.0.0",
    "steps": [{"percent": 5}, {"percent": 25}, {"percent": 100, "bakeSeconds": 0}],
    "gates": {"maxErrorRatePercent": 5},
}


def canary(**change: Any) -> Obj:
    """iris 2.0.0 introduced by steps, ending at 100%."""
    return rts(version("1.0.0", 0), version("2.0.0", 100), rollout=CANARY | change)


def no_ratio(version: Obj) -> None:
    version.pop("trafficRatio")


LOCAL = "is not in object storage"
CREDS = "must not carry credentials"
MP = "spec.multiPoolLoadBalancing.pools"

ROWS: list[Row] = [
    # Traffic ratios (real-time seed: "the sum of the traffic ratios ... is 100%").
    Row("ratio-sum-100", rts()),
    Row("ratio-sum-99", rts(version("1.0.0", 70), version("2.0.0", 29)), [(R, f"{T}, got 99")]),
    Row("ratio-sum-101", rts(version("1.0.0", 70), version("2.0.0", 31)), [(R, f"{T}, got 101")]),
    Row("single-version-100", rts(version("1.0.0", 100))),
    Row("single-version-90", rts(version("1.0.0", 90)), [(R, f"{T}, got 90")]),
    Row(
        "three-versions-100",
        edit(
            rts(version("1.0.0", 50), version("2.0.0", 30), version("1.0.0", 20)),
            lambda o: o["spec"]["versions"][2].update(application="echo"),
        ),
    ),
    Row(
        "three-versions-90",
        edit(
            rts(version("1.0.0", 50), version("2.0.0", 30), version("1.0.0", 10)),
            lambda o: o["spec"]["versions"][2].update(application="echo"),
        ),
        [(R, f"{T}, got 90")],
    ),
    Row("zero-ratio-version", rts(version("1.0.0", 100), version("2.0.0", 0))),
    Row(
        "ratio-above-100", rts(version("1.0.0", 101)), [("spec.versions[0].trafficRatio", "<= 100")]
    ),
    Row(
        "ratio-negative",
        rts(version("1.0.0", 100), version("2.0.0", -10)),
        [("spec.versions[1].trafficRatio", ">= 0")],
    ),
    Row(
        "ratio-not-integer",
        rts(version("1.0.0", "100")),  # type: ignore[arg-type]
        [("spec.versions[0].trafficRatio", "valid integer")],
    ),
    Row(
        "duplicate-pair",
        rts(version("1.0.0", 50), version("1.0.0", 50)),
        [(R, "pair may appear only once")],
    ),
    Row("no-versions", rts(version()) | {"spec": {"versions": []}}, [(R, "at least 1")]),
    Row("versions-missing", edit(rts(), lambda o: o["spec"].pop("versions")), [(R, "required")]),
    Row("unknown-field", rts(colour="blue"), [("spec.colour", "unknown field")]),
    Row(
        "compute-nodes-zero",
        rts(version("1.0.0", 100, computeNodes=0)),
        [("spec.versions[0].computeNodes", ">= 1")],
    ),
    # Timeout (both seeds: 3 to 120 minutes, default 20).
    Row(
        "timeout-2",
        rts(version("1.0.0", 100, timeoutMinutes=2)),
        [("spec.versions[0].timeoutMinutes", ">= 3")],
    ),
    Row("timeout-3", rts(version("1.0.0", 100, timeoutMinutes=3))),
    Row("timeout-120", rts(version("1.0.0", 100, timeoutMinutes=120))),
    Row(
        "timeout-121",
        rts(version("1.0.0", 100, timeoutMinutes=121)),
        [("spec.versions[0].timeoutMinutes", "<= 120")],
    ),
    Row("batch-timeout-2", bs(timeoutMinutes=2), [("spec.timeoutMinutes", ">= 3")]),
    Row("batch-timeout-120", bs(timeoutMinutes=120)),
    Row("batch-timeout-121", bs(timeoutMinutes=121), [("spec.timeoutMinutes", "<= 120")]),
    # Multi-pool load balancing (real-time seed: a multiple of 2, at least 2).
    Row("multipool-1-node", multipool(1), [(R, "even number of at least 2")]),
    Row("multipool-2-nodes", multipool(2)),
    Row("multipool-3-nodes", multipool(3), [(R, "even number of at least 2")]),
    Row("multipool-4-nodes", multipool(4)),
    Row("multipool-2-and-3", multipool(2, 3), [(R, "even number of at least 2")]),
    Row("multipool-one-pool", multipool(2, pools=["pool-a"]), [(MP, "exactly two distinct")]),
    Row(
        "multipool-same-pool",
        multipool(2, pools=["pool-a", "pool-a"]),
        [(MP, "exactly two distinct")],
    ),
    Row(
        "multipool-three-pools",
        multipool(2, pools=["pool-a", "pool-b", "pool-a"]),
        [(MP, "exactly two distinct")],
    ),
    Row(
        "multipool-no-pools",
        edit(multipool(2), lambda o: o["spec"]["multiPoolLoadBalancing"].pop("pools")),
        [(MP, "exactly two distinct")],
    ),
    Row(
        "multipool-disabled-1-node",
        rts(version("1.0.0", 100), multiPoolLoadBalancing={"enabled": False}),
    ),
    # WebSocket (real-time seed: excludes traffic limit and data collection; immutable).
    Row("websocket-ok", echo_rts(True)),
    Row(
        "websocket-traffic-limit",
        echo_rts(True, trafficLimit={"requestsPerSecond": 5}),
        [("spec.trafficLimit", "cannot be set on a websocket service")],
    ),
    Row(
        "websocket-data-collection",
        echo_rts(True, dataCollection={"enabled": True, "outputPath": "s3://bucket/dc/"}),
        [("spec.dataCollection", "cannot be enabled on a websocket service")],
    ),
    Row("websocket-data-collection-disabled", echo_rts(True, dataCollection={"enabled": False})),
    Row(
        "websocket-flipped-on",
        echo_rts(True),
        [("spec.websocket", "cannot be changed")],
        old=echo_rts(False),
    ),
    Row(
        "websocket-flipped-off",
        echo_rts(False),
        [("spec.websocket", "cannot be changed")],
        old=echo_rts(True),
    ),
    Row("websocket-unchanged", echo_rts(True), old=echo_rts(True)),
    Row(
        "websocket-app-with-websocket-api",
        rts(version() | {"application": "stream"}, websocket=True),
        layer="reference",
    ),
    # Shadows, pinning and sticky assignment (issue 16).
    Row("shadow-ok", rts(version("1.0.0", 100), version("2.0.0", 0, shadow=SHADOW))),
    Row(
        "shadow-without-ratio",
        rts(version("1.0.0", 100), edit(version("2.0.0", shadow=SHADOW), no_ratio)),
    ),
    Row(
        "shadow-with-ratio",
        rts(version("1.0.0", 70), version("2.0.0", 30, shadow=SHADOW)),
        [("spec.versions[1].trafficRatio", "trafficRatio must be 0")],
    ),
    Row(
        "shadow-sample-0",
        rts(version("1.0.0", 100), version("2.0.0", 0, shadow={"samplePercent": 0})),
        [("spec.versions[1].shadow.samplePercent", ">= 1")],
    ),
    Row(
        "shadow-sample-101",
        rts(version("1.0.0", 100), version("2.0.0", 0, shadow={"samplePercent": 101})),
        [("spec.versions[1].shadow.samplePercent", "<= 100")],
    ),
    Row(
        "shadow-only",
        rts(version("1.0.0", 0, shadow=SHADOW)),
        [(R, f"{T}, got 0")],
    ),
    Row(
        "shadows-four",
        rts(
            version("1.0.0", 100) | {"application": "many"},
            *(version(f"2.0.{n}", 0, shadow=SHADOW) | {"application": "many"} for n in range(4)),
        ),
        [(R, "at most 3 versions may be shadows")],
        layer="schema",
    ),
    Row(
        "shadow-websocket",
        rts(
            version() | {"application": "echo"},
            version("2.0.0", 0, shadow=SHADOW) | {"application": "stream"},
            websocket=True,
        ),
        [(R, "shadow versions cannot be used on a websocket service")],
    ),
    Row(
        "shadow-not-idempotent",
        rts(
            version() | {"application": "ledger"},
            version("2.0.0", 0, shadow=SHADOW) | {"application": "ledger"},
        ),
        [("spec.versions[1].shadow", "marks API POST / as not idempotent")],
        layer="reference",
    ),
    Row(
        "production-not-idempotent-no-shadow",
        rts(
            version("1.0.0", 50) | {"application": "ledger"},
            version("2.0.0", 50) | {"application": "ledger"},
        ),
        layer="reference",
    ),
    Row("pin-header-default", rts(routing={})),
    Row("pin-header-custom", rts(routing={"pinHeader": "X-Model-Version"})),
    Row(
        "pin-header-underscore",
        rts(routing={"pinHeader": "X_Model"}),
        [("spec.routing.pinHeader", "does not match")],
    ),
    Row(
        "pin-header-colon",
        rts(routing={"pinHeader": "X-Model:1"}),
        [("spec.routing.pinHeader", "does not match")],
    ),
    Row("sticky-header", rts(routing={"stickyBy": {"header": "X-User-Id"}})),
    Row("sticky-cookie", rts(routing={"stickyBy": {"cookie": "session_id"}})),
    Row(
        "sticky-cookie-dash",
        rts(routing={"stickyBy": {"cookie": "session-id"}}),
        [("spec.routing.stickyBy.cookie", "does not match")],
    ),
    Row(
        "sticky-both",
        rts(routing={"stickyBy": {"header": "X-User-Id", "cookie": "session"}}),
        [("spec.routing.stickyBy", "exactly one of header or cookie")],
    ),
    Row(
        "sticky-neither",
        rts(routing={"stickyBy": {}}),
        [("spec.routing.stickyBy", "exactly one of header or cookie")],
    ),
    # Progressive delivery (issue 17).
    Row("rollout-ok", canary()),
    Row(
        "rollout-steps-decrease",
        canary(steps=[{"percent": 25}, {"percent": 5}, {"percent": 100}]),
        [("spec.rollout.steps", "steps must increase")],
    ),
    Row(
        "rollout-steps-repeat",
        canary(steps=[{"percent": 5}, {"percent": 5}, {"percent": 100}]),
        [("spec.rollout.steps", "steps must increase")],
    ),
    Row(
        "rollout-no-gate",
        canary(gates={"minRequests": 10}),
        [("spec.rollout.gates", "at least one gate")],
    ),
    Row(
        "rollout-unknown-version",
        canary(version="iris:9.0.0"),
        [("spec.rollout.version", "must name one of the service's versions")],
    ),
    Row(
        "rollout-bad-version-name",
        canary(version="iris"),
        [("spec.rollout.version", "does not match")],
    ),
    Row(
        "rollout-of-a-shadow",
        rts(
            version("1.0.0", 100),
            version("2.0.0", 0, shadow=SHADOW),
            rollout=CANARY | {"steps": [{"percent": 100}]},
        ),
        [("spec.rollout.version", "not a shadow")],
    ),
    Row(
        "rollout-ends-elsewhere",
        rts(version("1.0.0", 50), version("2.0.0", 50), rollout=CANARY),
        [("spec.rollout.steps", "last step's percent must be the rollout version's")],
    ),
    Row(
        "rollout-query-gate-without-prometheus",
        canary(gates={"queries": [{"name": "errors", "query": "vector(0)", "max": 1}]}),
        [("spec.rollout.gates.queries", "names no Prometheus (prometheus.url) to query")],
        layer="catalog",
    ),
    Row(
        "rollout-query-gate-bad-name",
        canary(gates={"queries": [{"name": "1x", "query": "vector(0)", "max": 1}]}),
        [("spec.rollout.gates.queries[0].name", "does not match")],
    ),
    Row(
        "rollout-websocket",
        echo_rts(True, rollout=CANARY | {"version": "echo:1.0.0", "steps": [{"percent": 100}]}),
        [("spec.rollout", "cannot be used on a websocket service")],
    ),
    Row(
        "rollout-step-zero-without-shadow",
        canary(steps=[{"percent": 0}, {"percent": 100}]),
        [("spec.rollout.steps[0]", "either a share (percent above 0) or a shadow")],
    ),
    Row(
        "rollout-shadow-step",
        canary(
            steps=[{"percent": 0, "shadowPercent": 50}, {"percent": 10}, {"percent": 100}],
            gates={"minAgreementPercent": 95},
        ),
    ),
    Row(
        "rollout-share-and-shadow",
        canary(steps=[{"percent": 10, "shadowPercent": 50}, {"percent": 100}]),
        [("spec.rollout.steps[0]", "either a share (percent above 0) or a shadow")],
    ),
    Row(
        "rollout-shadow-step-not-idempotent",
        rts(
            version("1.0.0", 0) | {"application": "ledger"},
            version("2.0.0", 100) | {"application": "ledger"},
            rollout=CANARY
            | {
                "version": "ledger:2.0.0",
                "steps": [{"percent": 0, "shadowPercent": 5}, {"percent": 100}],
            },
        ),
        [("spec.rollout.steps", "a shadow step would repeat its effects")],
        layer="reference",
    ),
    Row("traffic-limit-ok", rts(trafficLimit={"requestsPerSecond": 10, "burst": 5})),
    Row(
        "traffic-limit-zero",
        rts(trafficLimit={"requestsPerSecond": 0}),
        [("spec.trafficLimit.requestsPerSecond", ">= 1")],
    ),
    Row(
        "data-collection-no-output",
        rts(dataCollection={"enabled": True}),
        [("spec.dataCollection.outputPath", "required when data collection is enabled")],
    ),
    Row(
        "data-collection-ratio",
        rts(dataCollection={"enabled": True, "sampleRatio": 1.5, "outputPath": "s3://bucket/dc/"}),
        [("spec.dataCollection.sampleRatio", "<= 1")],
    ),
    Row(
        "data-collection-redaction",
        rts(
            dataCollection={
                "enabled": True,
                "outputPath": "s3://bucket/dc/",
                "redactHeaders": ["X-Tenant-Token"],
                "redactQueryParameters": ["session_id", "Auth"],
            }
        ),
    ),
    Row(
        "data-collection-redact-bad-header",
        rts(dataCollection={"enabled": False, "redactHeaders": ["ok", "not a header"]}),
        [("spec.dataCollection.redactHeaders[1]", "match")],
    ),
    Row(
        "data-collection-redact-bad-query-name",
        rts(dataCollection={"enabled": False, "redactQueryParameters": ["a=b"]}),
        [("spec.dataCollection.redactQueryParameters[0]", "match")],
    ),
    Row(
        "data-collection-redact-too-many",
        rts(dataCollection={"enabled": False, "redactHeaders": [f"x-{i}" for i in range(33)]}),
        [("spec.dataCollection.redactHeaders", "at most 32")],
    ),
    # Environment variables (secrets only by reference).
    Row(
        "env-secret-ref",
        rts(
            version(
                "1.0.0",
                100,
                env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            )
        ),
    ),
    Row(
        "env-value-and-ref",
        rts(
            version(
                "1.0.0",
                100,
                env=[
                    {
                        "name": "TOKEN",
                        "value": "x",
                        "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                    }
                ],
            )
        ),
        [("spec.versions[0].env[0]", "either value or valueFrom")],
    ),
    Row(
        "env-two-refs",
        rts(
            version(
                "1.0.0",
                100,
                env=[
                    {
                        "name": "T",
                        "valueFrom": {
                            "secretKeyRef": {"name": "s", "key": "k"},
                            "configMapKeyRef": {"name": "c", "key": "k"},
                        },
                    }
                ],
            )
        ),
        [("spec.versions[0].env[0].valueFrom", "exactly one of")],
    ),
    Row(
        "env-bad-name",
        rts(version("1.0.0", 100, env=[{"name": "1A", "value": "x"}])),
        [("spec.versions[0].env[0].name", "does not match")],
    ),
    # Names too long or malformed for Kubernetes.
    Row("rts-name-56", rts(name="a" * 56)),
    Row("rts-name-57", rts(name="a" * 57), [("metadata.name", "at most 56")]),
    Row("rts-name-uppercase", rts(name="Svc"), [("metadata.name", "DNS-1035")]),
    Row("rts-name-digit-first", rts(name="1svc"), [("metadata.name", "DNS-1035")]),
    Row("bs-name-52", bs(name="b" * 52)),
    Row("bs-name-53", bs(name="b" * 53), [("metadata.name", "at most 52")]),
    Row(
        "app-name-64",
        edit(app(), lambda o: o["metadata"].update(name="a" * 64)),
        [("metadata.name", "at most 63")],
    ),
    # Batch paths and parameters.
    Row("bs-manifest-input", bs(inputPath="obs://bucket/data/input.manifest")),
    # Cluster objects keep their data in object storage (local paths are for batch run).
    Row(
        "bs-local-paths",
        bs(inputPath="/data/in", outputPath="file:///data/out"),
        [("spec.inputPath", LOCAL), ("spec.outputPath", LOCAL)],
        layer="cluster",
    ),
    Row("bs-local-output", bs(outputPath="/tmp/out"), [("spec.outputPath", LOCAL)], "cluster"),
    Row(
        "data-collection-local",
        rts(dataCollection={"enabled": True, "outputPath": "/data/collected"}),
        [("spec.dataCollection.outputPath", LOCAL)],
        layer="cluster",
    ),
    Row(
        "data-collection-file-url",
        rts(dataCollection={"enabled": True, "outputPath": "file:///data/collected"}),
        [("spec.dataCollection.outputPath", LOCAL)],
        layer="cluster",
    ),
    Row(
        "data-collection-obs",
        rts(dataCollection={"enabled": True, "outputPath": "obs://bucket/dc"}),
    ),
    # Credentials only by Secret reference, never in a URL.
    Row(
        "storage-endpoint-credentials",
        rts(storage={"endpoint": "https://user:pass@obs.example.com"}),
        [("spec.storage.endpoint", CREDS)],
        layer="cluster",
    ),
    Row(
        "bs-storage-endpoint-user",
        bs(storage={"endpoint": "http://AKIAEXAMPLE@s3.local:9000", "secretRef": {"name": "s"}}),
        [("spec.storage.endpoint", CREDS)],
        layer="cluster",
    ),
    Row("storage-endpoint-at-in-path", rts(storage={"endpoint": "https://obs.example.com/a@b"})),
    Row(
        "app-model-uri-credentials",
        edit(
            app(),
            lambda o: o["spec"]["versions"][0].update(modelUri="https://u:p@models.example.com/m"),
        ),
        [("spec.versions[0].modelUri", CREDS)],
        layer="cluster",
    ),
    Row(
        "bs-https-input",
        bs(inputPath="https://example.com/in/"),
        [("spec.inputPath", "does not match")],
    ),
    Row(
        "bs-request-path-relative",
        bs(requestPath="predict"),
        [("spec.requestPath", "does not match")],
    ),
    Row("bs-concurrency-0", bs(concurrency=0), [("spec.concurrency", ">= 1")]),
    Row("bs-queue-name", bs(queueName="team-a")),
    Row(
        "bs-missing-output",
        edit(bs(), lambda o: o["spec"].pop("outputPath")),
        [("spec.outputPath", "required")],
    ),
    # Applications.
    Row("app-ok", app()),
    Row(
        "app-duplicate-versions",
        app(versions=("1.0.0", "1.0.0")),
        [("spec.versions", "version name may appear only once")],
    ),
    Row(
        "app-bad-version",
        app(versions=("1.0.0 beta",)),
        [("spec.versions[0].version", "does not match")],
    ),
    Row(
        "app-bad-port",
        edit(app(), lambda o: o["spec"]["versions"][0].update(port=70000)),
        [("spec.versions[0].port", "<= 65535")],
    ),
    Row("app-no-apis", APPS[2], [("spec.versions[0].apis", "at least one API")], layer="reference"),
    Row(
        "app-unwalkable-schema",
        edit(
            app(),
            lambda o: o["spec"]["versions"][0]["apis"][0]["request"]["data"].update(type="tensor"),
        ),
        [("spec.versions[0].apis[0].request.data.type", "unknown type")],
        layer="reference",
    ),
    # WebSocket APIs (request Content-type with transport=websocket; README, applications).
    Row("app-websocket-api", stream_app()),
    Row(
        "app-websocket-api-quoted-param",
        ws_api(
            lambda a: a["request"].update(
                {"Content-type": 'application/json;Transport="WebSocket"'}
            )
        ),
    ),
    Row(
        "app-websocket-api-post",
        ws_api(lambda a: a.update(method="post")),
        [("spec.versions[0].apis[1].method", "must use method get")],
        layer="reference",
    ),
    Row(
        "app-websocket-api-file",
        ws_api(lambda a: a["request"]["data"]["properties"].update(x={"type": "file"})),
        [("spec.versions[0].apis[1].request.data", "JSON text messages, not files")],
        layer="reference",
    ),
    # Catalog rules (seeds: free flavors, dedicated pools, batch in the public pool).
    Row(
        "free-flavor-one-version",
        rts(version("1.0.0", 100, specification="free.1u2g")),
        layer="catalog",
    ),
    Row(
        "free-flavor-two-versions",
        rts(version("1.0.0", 70, specification="free.1u2g"), version("2.0.0", 30)),
        [("spec.versions[0].specification", "single version")],
        layer="catalog",
    ),
    Row(
        "unknown-flavor",
        rts(version("1.0.0", 100, specification="cpu.64u")),
        [("spec.versions[0].specification", "unknown flavor")],
        layer="catalog",
    ),
    Row(
        "unknown-pool",
        rts(resourcePool="pool-z"),
        [("spec.resourcePool", "unknown pool")],
        layer="catalog",
    ),
    Row("dedicated-pool", rts(resourcePool="pool-a"), layer="catalog"),
    Row(
        "gpu-in-public-pool",
        rts(version("1.0.0", 100, specification="gpu.1x")),
        [("spec.versions[0].specification", "not offered in pool 'public'")],
        layer="catalog",
    ),
    Row(
        "free-in-dedicated-pool",
        rts(version("1.0.0", 100, specification="free.1u2g"), resourcePool="pool-a"),
        [("spec.versions[0].specification", "not offered in pool 'pool-a'")],
        layer="catalog",
    ),
    Row(
        "multipool-public-pool",
        multipool(2, pools=["pool-a", "public"]),
        [("spec.multiPoolLoadBalancing.pools[1]", "needs dedicated pools")],
        layer="catalog",
    ),
    Row(
        "multipool-unknown-pool",
        multipool(2, pools=["pool-a", "pool-z"]),
        [("spec.multiPoolLoadBalancing.pools[1]", "unknown pool")],
        layer="catalog",
    ),
    Row(
        "multipool-flavor-not-in-both",
        edit(multipool(2), lambda o: o["spec"]["versions"][0].update(specification="free.1u2g")),
        [
            ("spec.versions[0].specification", "not offered in pool 'pool-a'"),
            ("spec.versions[0].specification", "not offered in pool 'pool-b'"),
        ],
        layer="catalog",
    ),
    Row(
        "multipool-gpu",
        edit(multipool(2), lambda o: o["spec"]["versions"][0].update(specification="gpu.1x")),
        layer="catalog",
    ),
    Row(
        "batch-gpu-dedicated-only",
        bs(specification="gpu.1x"),
        [("spec.specification", "public pool only")],
        layer="catalog",
    ),
    Row(
        "batch-unknown-flavor",
        bs(specification="cpu.64u"),
        [("spec.specification", "unknown flavor")],
        layer="catalog",
    ),
    # References to applications (seeds: only Normal versions may be deployed).
    Row(
        "unknown-application",
        rts(version("1.0.0", 100) | {"application": "nope"}),
        [("spec.versions[0].application", "not found")],
        layer="reference",
    ),
    Row(
        "unknown-version",
        rts(version("3.0.0", 100)),
        [("spec.versions[0].version", "has no version '3.0.0'")],
        layer="reference",
    ),
    Row(
        "invalid-version",
        rts(version("1.0.0", 100) | {"application": "broken"}),
        [("spec.versions[0].version", "is Invalid")],
        layer="reference",
    ),
    Row(
        "websocket-app-not-websocket",
        rts(version("1.0.0", 100), websocket=True),
        [("spec.websocket", "does not speak WebSocket")],
        layer="reference",
    ),
    Row(
        "batch-request-path-unknown",
        bs(requestPath="/predict"),
        [("spec.requestPath", "not one of the app's API urls")],
        layer="reference",
    ),
    Row("batch-request-path-known", bs(requestPath="/"), layer="reference"),
    Row(
        "batch-unknown-version",
        bs(version="9.9.9"),
        [("spec.version", "has no version")],
        layer="reference",
    ),
    Row(
        "batch-mapping-no-index",
        bs(mapping={"type": "object", "properties": {"x": {"type": "number"}}}),
        [("spec.mapping", "no leaf has a valid index")],
        layer="reference",
    ),
    Row(
        "batch-mapping-ok",
        bs(mapping={"type": "object", "properties": {"x": {"type": "number", "index": 0}}}),
        layer="reference",
    ),
    Row("batch-http-api-of-websocket-app", bs(application="stream"), layer="reference"),
    Row(
        "batch-request-path-websocket",
        bs(application="stream", requestPath="/ws"),
        [("spec.requestPath", "'/ws' is a WebSocket API")],
        layer="reference",
    ),
    Row(
        "batch-first-api-websocket",
        bs(application="stream", version="2.0.0"),
        [("spec.requestPath", "first API '/ws' is a WebSocket API")],
        layer="reference",
    ),
]
