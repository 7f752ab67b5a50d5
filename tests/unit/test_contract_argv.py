"""The argv the operator writes into a pod, read back by the program's own command-line
parser, gives the options the builder meant (inferops.contract.agent, .fetch_model)."""

from __future__ import annotations

import argparse
import copy
from dataclasses import fields, replace
from typing import Any

import pytest

from inferops.api.application import AIApplicationSpec
from inferops.api.catalog import default_catalog
from inferops.api.realtime import RealTimeServiceSpec
from inferops.cli import build_parser
from inferops.commands.agent import register as register_agent
from inferops.commands.runtime import cmd_fetch_model
from inferops.contract.agent import HEALTH_PATH, POD_ENV, AgentOptions
from inferops.contract.fetch_model import DEFAULT_DEST, FetchModelOptions
from inferops.contract.fetch_model import options_from_args as fetch_model_options
from inferops.resources.realtime import Inputs, agent_options, realtime_children
from inferops.resources.workload import MODEL_DIR
from inferops.runtime.agent import options_from_args
from tests.unit.rules_table import app, rts, version

POD = "svc-iris-1-0-0-7d9f-abcde"


def agent_parse(argv: list[str], environ: dict[str, str]) -> AgentOptions:
    """What `inferops agent` starts with: its own subcommand registration, its own parse."""
    parser = argparse.ArgumentParser(prog="inferops")
    register_agent(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    assert args.func.__name__ == "cmd_agent"
    return options_from_args(args, environ)


EVERY_OPTION_SET = AgentOptions(
    output="file:///var/collect",
    upstream="http://127.0.0.1:9000",
    host="127.0.0.1",
    port=9001,
    sample_ratio=0.0,
    service="svc",
    version="iris:2.0.0",
    pod="pod-9",
    flush_seconds=2.5,
    flush_lines=7,
    max_buffer_lines=9,
    max_buffer_bytes=12345,
    max_body_bytes=100,
    max_capture_bytes=50,
    timeout_seconds=12.5,
    endpoint="http://s3.local:9000",
    region="eu-west-1",
    redact_headers=("x-tenant-token", "x-session"),
    redact_query_parameters=("session_id",),
)


@pytest.mark.parametrize(
    "options",
    [
        AgentOptions(output="s3://bucket/collected/", pod="pod-1"),
        AgentOptions(
            output="obs://bucket/x",
            upstream="http://127.0.0.1:9000",
            sample_ratio=0.25,
            service="svc",
            version="iris:1.0.0",
            pod="pod-1",
        ),
        AgentOptions(output="/data/out", sample_ratio=1 / 3, pod="pod-1", flush_lines=1),
        EVERY_OPTION_SET,
    ],
    ids=["defaults", "builder-like", "float-ratio", "every-option"],
)
def test_agent_argv_round_trips(options: AgentOptions) -> None:
    argv = options.argv()
    assert argv[0] == "agent"
    # The four flags every pod spells out come first, in the order pods were rolled out with.
    assert argv[1:8:2] == ["--port", "--upstream", "--output", "--sample-ratio"]
    assert agent_parse(argv, environ={}) == options


def test_every_agent_option_travels() -> None:
    """EVERY_OPTION_SET differs from every default, so its round trip covers every field."""
    for field in fields(AgentOptions):
        assert getattr(EVERY_OPTION_SET, field.name) != field.default, field.name


def test_names_left_unknown_come_from_the_environment() -> None:
    options = AgentOptions(output="s3://bucket/x")
    assert "--service" not in options.argv() and "--pod" not in options.argv()
    environ = {"INFEROPS_SERVICE": "svc", "INFEROPS_VERSION": "v1", POD_ENV: POD}
    assert agent_parse(options.argv(), environ) == replace(
        options, service="svc", version="v1", pod=POD
    )
    assert agent_parse(options.argv(), {POD_ENV: POD}).service == "unknown"


def kubernetes_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet would set it (secrets as placeholders)."""
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif var["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[var["name"]] = POD
        else:
            env[var["name"]] = "secret"
    return env


def realtime_inputs(model_port: int = 8080, model_uri: str | None = None, **spec: Any) -> Inputs:
    app_spec = copy.deepcopy(app()["spec"])
    app_spec["versions"][0]["port"] = model_port
    if model_uri:
        app_spec["versions"][0]["modelUri"] = model_uri
    apps = {"iris": AIApplicationSpec.model_validate(app_spec)}
    obj = rts(version("1.0.0", 100), **spec)
    obj["metadata"] |= {"namespace": "ns", "uid": "1234"}
    return Inputs(
        obj,
        RealTimeServiceSpec.model_validate(obj["spec"]),
        {(a, v.version): v for a, s in apps.items() for v in s.versions},
        default_catalog(),
    )


def pod_spec(inputs: Inputs) -> dict[str, Any]:
    [deployment] = [
        c
        for c in realtime_children(inputs)
        if c["kind"] == "Deployment"
        and c["metadata"]["labels"]["app.kubernetes.io/component"] == "model"
    ]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize(
    ("model_port", "collection", "storage"),
    [
        (
            8080,
            {"sampleRatio": 0.25, "outputPath": "s3://bucket/collected/"},
            {"endpoint": "http://s3.local:9000", "secretRef": {"name": "creds"}},
        ),
        (9000, {"outputPath": "obs://bucket-b/x"}, None),
        (8080, {"sampleRatio": 0.001, "outputPath": "file:///tmp/collected"}, {"region": "eu-1"}),
        (
            8080,
            {
                "outputPath": "s3://bucket/collected/",
                "redactHeaders": ["X-Tenant-Token", "x-session"],
                "redactQueryParameters": ["Session_ID", "auth"],
            },
            None,
        ),
    ],
)
def test_the_agent_reads_back_what_the_builder_put_in_the_pod(
    model_port: int, collection: dict[str, Any], storage: dict[str, Any] | None
) -> None:
    extra = {"storage": storage} if storage else {}
    inputs = realtime_inputs(model_port, dataCollection={"enabled": True, **collection}, **extra)
    [agent] = [c for c in pod_spec(inputs)["containers"] if c["name"] == "agent"]
    parsed = agent_parse(agent["args"], kubernetes_env(agent))
    entry = inputs.spec.versions[0]
    # The pod name is the one thing the builder cannot know: Kubernetes fills it in.
    assert parsed == replace(agent_options(inputs, entry, model_port), pod=POD)
    assert parsed.upstream == f"http://127.0.0.1:{model_port}"
    assert agent["ports"][0]["containerPort"] == parsed.port
    assert agent["readinessProbe"]["httpGet"]["path"] == HEALTH_PATH
    # Redaction: what the service names, lower-case (the defaults apply anyway).
    assert parsed.redact_headers == tuple(n.lower() for n in collection.get("redactHeaders", []))
    assert parsed.redact_query_parameters == tuple(
        n.lower() for n in collection.get("redactQueryParameters", [])
    )


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--redact-headers", "x-ok,bad header"),
        ("--redact-headers", "x:y"),
        ("--redact-query-parameters", "a=b"),
        ("--redact-query-parameters", "x" * 129),
    ],
)
def test_agent_refuses_bad_redaction_names(flag: str, value: str) -> None:
    with pytest.raises(SystemExit):
        agent_parse(["agent", "--output", "s3://b/x", flag, value], environ={})


def test_redaction_names_are_normalised_on_both_sides() -> None:
    parsed = agent_parse(
        ["agent", "--output", "s3://b/x", "--redact-headers", " X-A , x-a,,X-B "], environ={}
    )
    assert parsed.redact_headers == ("x-a", "x-b")


def fetch_model_parse(argv: list[str]) -> FetchModelOptions:
    """What `inferops fetch-model` starts with: the `inferops` parser and its parse."""
    args = build_parser().parse_args(argv)
    assert args.func is cmd_fetch_model
    return fetch_model_options(args)


@pytest.mark.parametrize(
    "options",
    [
        FetchModelOptions("s3://models/iris/"),
        FetchModelOptions("obs://models/iris/v1/model.json", dest="/work/m"),
        FetchModelOptions(
            "https://example.com/m.tar", endpoint="http://s3.local:9000", region="eu-west-1"
        ),
    ],
    ids=["default-dest", "dest", "endpoint-region"],
)
def test_fetch_model_argv_round_trips(options: FetchModelOptions) -> None:
    argv = options.argv()
    assert argv[:4] == ["fetch-model", options.source, "--dest", options.dest]
    assert fetch_model_parse(argv) == options


def test_fetch_model_reads_back_what_the_builder_put_in_the_pod() -> None:
    pod = pod_spec(realtime_inputs(model_uri="s3://models/iris/"))
    [init] = pod["initContainers"]
    assert fetch_model_parse(init["args"]) == FetchModelOptions("s3://models/iris/", MODEL_DIR)
    # It writes where the model container reads.
    assert init["volumeMounts"][0]["mountPath"] == DEFAULT_DEST
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == DEFAULT_DEST
