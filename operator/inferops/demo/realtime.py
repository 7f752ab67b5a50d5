"""The RealTimeService steps: read the examples, run each version, route traffic with nginx.

The versions come from `desired_state`, the children reconcile applies: one local model
server per version Service, with the env of the version's model container, and the nginx
upstreams named after those Services.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from inferops.api.catalog import default_catalog
from inferops.api.names import KIND_APPLICATION, KIND_REALTIME, LABEL_APPLICATION, LABEL_VERSION
from inferops.api.realtime import RealTimeServiceSpec
from inferops.demo.errors import DemoError
from inferops.demo.processes import model_server
from inferops.demo.router import nginx_binary, nginx_router
from inferops.demo.shipped import APPLICATION_FILE, MODEL_DIR, SERVICE_FILE
from inferops.demo.state import INDENT, Demo, LocalVersion
from inferops.demo.traffic import SEED_BODY, send
from inferops.manifests import ManifestError, read_documents
from inferops.resources.desired import Service, desired_state, parse_service
from inferops.resources.nginx import Backend, nginx_config
from inferops.validation import ValidationContext, validate_object
from inferops.validation.references import index_applications, namespace_of, version_specs

REQUESTS = 1_000
CONCURRENCY = 16
# No API server assigns one here; it only ends up in the children's ownerReferences.
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"


def _child(children: Sequence[dict[str, Any]], kind: str, application: str, version: str) -> Any:
    for child in children:
        labels = child["metadata"].get("labels", {})
        if (
            child["kind"] == kind
            and labels.get(LABEL_APPLICATION) == application
            and labels.get(LABEL_VERSION) == version
        ):
            return child
    raise DemoError(f"the desired state has no {kind} for {application} {version}")


def local_versions(service: Service, children: Sequence[dict[str, Any]]) -> list[LocalVersion]:
    """One local model server per version, as the service's children describe it."""
    assert isinstance(service.spec, RealTimeServiceSpec)
    versions = []
    for entry in service.spec.versions:
        upstream = _child(children, "Service", entry.application, entry.version)
        deployment = _child(children, "Deployment", entry.application, entry.version)
        containers = deployment["spec"]["template"]["spec"]["containers"]
        model = next(c for c in containers if c["name"] == "model")
        # The app version's env merged with the service's; values from Secrets do not apply.
        env = {e["name"]: e["value"] for e in model.get("env", []) if "value" in e}
        versions.append(
            LocalVersion(
                entry.application,
                entry.version,
                entry.traffic_ratio,
                upstream["metadata"]["name"],
                env,
            )
        )
    return versions


def read_examples(demo: Demo) -> None:
    files = [str(demo.examples / APPLICATION_FILE), str(demo.examples / SERVICE_FILE)]
    try:
        documents = read_documents(files)
    except ManifestError as exc:
        raise DemoError(str(exc)) from None
    apps = index_applications(doc.obj for doc in documents)
    for doc in documents:
        if doc.obj.get("kind") == KIND_APPLICATION:
            demo.applications[doc.obj["metadata"]["name"]] = doc.obj
    catalog = default_catalog()
    context = ValidationContext(catalog=catalog, applications=apps)
    problems = [str(p) for doc in documents for p in validate_object(doc.obj, context)]
    if problems:
        raise DemoError("the examples do not validate:\n" + "\n".join(problems))
    found = next(d.obj for d in documents if d.obj.get("kind") == KIND_REALTIME)
    namespace = namespace_of(found)
    obj = {
        **found,
        "metadata": {**found["metadata"], "namespace": namespace, "uid": PLACEHOLDER_UID},
    }
    service = parse_service(obj, version_specs(apps, namespace))
    children = desired_state(service, catalog)
    demo.service = obj["metadata"]["name"]
    demo.versions = local_versions(service, children)
    split = ", ".join(f"{v.label} {v.ratio}%" for v in demo.versions)
    print(f"{INDENT}both files are valid; RealTimeService {demo.service}: {split}")
    kinds = Counter(c["kind"] for c in children)
    applied = ", ".join(f"{kind} x{count}" for kind, count in kinds.items())
    print(f"{INDENT}the operator would apply: {applied}")


def start_model_servers(demo: Demo) -> None:
    model = demo.examples / MODEL_DIR
    for version in demo.versions:
        log = demo.work_dir / f"model-server-{version.upstream}.log"
        version.address = demo.stack.enter_context(model_server(model, log, version.env))
        print(f"{INDENT}{version.label:<14} inferops model-server on {version.address}")


def route_traffic(demo: Demo) -> None:
    if nginx_binary() is None:
        print(f"{INDENT}nginx is not installed, so this step is skipped")
        print(f"{INDENT}(Debian: apt-get install nginx-light, then run the demo again)")
        first = demo.versions[0]
        traffic = send(f"http://{first.address}/", 1, 1)
        if traffic.sample is None:
            raise DemoError(f"{first.label} did not answer: {dict(traffic.statuses)}")
        _print_sample(f"{first.label}, asked directly", traffic.sample[1])
        return
    # The router ConfigMap of the desired state is written for the cluster: it proxies to
    # the version Services' DNS names, listens on the router's port and shares the
    # trafficLimit among the router replicas. Here the versions listen on loopback ports
    # known only once they run, so the same generator (nginx_config) writes the config again
    # from the same upstreams (the version Services' names) and ratios.
    backends = [Backend(v.upstream, v.address, v.ratio) for v in demo.versions]

    def config(listen: str, runtime_dir: str) -> str:
        # The example's trafficLimit is left out so that 1,000 requests run at full speed.
        return nginx_config(backends, listen=listen, runtime_dir=runtime_dir, worker_processes="1")

    port = demo.stack.enter_context(nginx_router(config, demo.work_dir))
    print(f"{INDENT}nginx runs the generated router config on 127.0.0.1:{port}")
    traffic = send(f"http://127.0.0.1:{port}/", REQUESTS, CONCURRENCY)
    ok = traffic.statuses[200]
    rate = REQUESTS / traffic.seconds if traffic.seconds else 0.0
    print(f"{INDENT}sent {REQUESTS:,} requests in {traffic.seconds:.1f} s ({rate:,.0f}/s):")
    for version in demo.versions:
        count = traffic.backends[version.upstream]
        print(
            f"{INDENT}  {version.label:<14} {count:>5} answers  {100 * count / REQUESTS:5.1f}%"
            f"  (target {version.ratio}%)"
        )
    if ok != REQUESTS:
        raise DemoError(f"only {ok} of {REQUESTS} requests succeeded: {dict(traffic.statuses)}")
    backend, prediction = traffic.sample
    _print_sample(
        next((v.label for v in demo.versions if v.upstream == backend), backend), prediction
    )


def _print_sample(label: str, prediction: Any) -> None:
    result = prediction["resp_data"][0]
    print(
        f"{INDENT}sample prediction from {label}: {result['predictresult']} "
        f"for {json.dumps(SEED_BODY['data']['req_data'][0])}"
    )
