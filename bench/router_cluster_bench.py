"""Router latency in a real cluster: the stable Service (nginx router pods) versus a version's
own Service, same client, same run.

A RealTimeService with one version (iris 1.0.0 of examples/iris-application.yaml, 100%, one
pod, flavor cpu.2u4g, no trafficLimit) runs on the test cluster's real node. From the host,
over keep-alive connections to the Services' ClusterIPs (kube-proxy programs the host's
OUTPUT chains), the same aiohttp load generator posts the seed body to

- router: the stable Service `iris-bench` (port 80), through the router's nginx pods;
- direct: the version's own Service (port 8080), straight to the model pod;

interleaved in rounds (the order flips every round) so that noise on the machine hits both
alike. Every reply is checked: a 200 with the iris prediction, and X-Inferops-Version naming
the version's Service through the router (absent when direct). It reports requests/second,
mean, p50 and p99 per target and, for p50 and p99, router minus direct (ms) and
router / direct.

By default it starts its own cluster (tests/cluster/controlplane.py with the real node, in a
temp dir; images from images/build.py), installs the chart, measures and tears it all down,
reporting whether the host was restored. Only one real node can run on a machine: while the
bridge `inferops0` exists it waits (`--wait-for-node`).

    .venv/bin/python bench/router_cluster_bench.py --out /tmp/router-cluster.json
    .venv/bin/python bench/router_cluster_bench.py --kubeconfig ~/.cache/inferops/cluster/kubeconfig

With `--kubeconfig` it uses a running cluster whose operator watches `--namespace` (e.g.
`make cluster-up` and the chart installed with helm); the namespace is created (pods on the
real node) when missing and deleted after, the bench's objects are deleted either way.

This is a benchmark, not a test: nothing under tests/ runs it and it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "tests" / "cluster"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import controlplane as cpmod  # noqa: E402
import realnode  # noqa: E402
from k8s_helpers import (  # noqa: E402
    Kubectl,
    kubectl_path,
    wait_established,
    wait_for_default_service_account,
)
from kubernetes import client, config  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

from inferops.demo import SEED_BODY  # noqa: E402
from inferops.resources.labels import LABEL_COMPONENT  # noqa: E402
from inferops.resources.naming import child_name  # noqa: E402
from inferops.resources.nginx import VERSION_HEADER  # noqa: E402
from inferops.resources.realtime import ROUTER_REPLICAS, SERVICE_PORT, VERSION_PORT  # noqa: E402
from tests.e2e.support import (  # noqa: E402
    APPS_NAMESPACE,
    E2E_FLAVORS,
    OPERATOR_NAMESPACE,
    current_status,
    custom_object,
    delete_namespace,
    install_operator,
    make_node_namespace,
    pods_report,
)

SERVICE = "iris-bench"
APPLICATION = "iris"
VERSION = "1.0.0"
FLAVOR = "cpu.2u4g"
APP_MANIFEST = REPO / "examples" / "iris-application.yaml"
# One version at 100%, one pod, and no trafficLimit: a limit would answer 429 and distort it.
SERVICE_MANIFEST = f"""\
apiVersion: serving.inferops.dev/v1alpha1
kind: RealTimeService
metadata:
  name: {SERVICE}
spec:
  description: Router latency benchmark (bench/router_cluster_bench.py).
  resourcePool: public
  versions:
  - application: {APPLICATION}
    version: {VERSION}
    trafficRatio: 100
    specification: {FLAVOR}
    computeNodes: 1
"""
VERSION_SERVICE = child_name(SERVICE, APPLICATION, VERSION)
VERSION_LABEL = f"{APPLICATION}:{VERSION}"  # what the router's X-Inferops-Version says
OWNER_SELECTOR = f"serving.inferops.dev/owner-name={SERVICE}"
BODY = json.dumps(SEED_BODY).encode()
HEADERS = {"Content-Type": "application/json"}
EXPECTED = ["setosa"]  # the iris model's answer to the seed body
# The only addresses this script sends requests to: the test cluster's Services and pods.
ALLOWED_NETWORKS = [
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network(realnode.POD_CIDR),
    ipaddress.ip_network(cpmod.SERVICE_CIDR),
]


class BenchError(RuntimeError):
    """The benchmark could not be set up (or not be measured); the message says why."""


# --------------------------------------------------------------------------- load


@dataclass
class Run:
    """What one target answered in one or more measured windows."""

    latencies: list[float] = field(default_factory=list)  # seconds, valid replies only
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def add(self, other: Run) -> None:
        self.latencies += other.latencies
        self.errors.update(other.errors)
        self.seconds += other.seconds


async def post(session: aiohttp.ClientSession, url: str, backend: str | None) -> tuple[float, str]:
    """One request: its latency (send to end of body) and "" or what was wrong with it."""
    start = time.perf_counter()
    try:
        async with session.post(url, data=BODY, headers=HEADERS) as response:
            body = await response.read()
            elapsed = time.perf_counter() - start
            status, header = response.status, response.headers.get(VERSION_HEADER)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return time.perf_counter() - start, type(exc).__name__
    if status != 200:
        return elapsed, f"HTTP {status}"
    if header != backend:
        return elapsed, f"{VERSION_HEADER} {header!r}"
    try:
        predictions = [r["predictresult"] for r in json.loads(body)["resp_data"]]
    except (ValueError, KeyError, TypeError):
        return elapsed, "not an iris answer"
    return elapsed, "" if predictions == EXPECTED else f"predictions {predictions}"


async def load(url: str, backend: str | None, requests: int, concurrency: int) -> Run:
    """`requests` requests over `concurrency` keep-alive connections, back to back. The
    connections are new (kube-proxy picks a router pod per connection) and each first
    carries one unmeasured request, so connecting is not part of the latencies."""
    run = Run()
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(post(session, url, backend) for _ in range(concurrency)))
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                elapsed, problem = await post(session, url, backend)
                if problem:
                    run.errors[problem] += 1
                else:
                    run.latencies.append(elapsed)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.seconds = time.perf_counter() - began
    return run


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(run: Run) -> dict[str, Any]:
    latencies = run.latencies or [float("nan")]
    ok = len(run.latencies)
    return {
        "requests": ok,
        "errors": sum(run.errors.values()),
        "error_kinds": dict(run.errors),
        "seconds": round(run.seconds, 3),
        "rps": round(ok / run.seconds, 1) if run.seconds else 0.0,
        "mean_ms": round(1000 * statistics.fmean(latencies), 3),
        "p50_ms": round(1000 * percentile(latencies, 50), 3),
        "p99_ms": round(1000 * percentile(latencies, 99), 3),
    }


def compare(direct: dict[str, Any], router: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for stat in ("p50", "p99", "mean"):
        d, r = direct[f"{stat}_ms"], router[f"{stat}_ms"]
        out[stat] = {
            "difference_ms": round(r - d, 3),
            "ratio": round(r / d, 3) if d else None,
        }
    out["rps_ratio"] = round(router["rps"] / direct["rps"], 3) if direct["rps"] else None
    return out


def measure(targets: dict[str, tuple[str, str | None]], args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up, then `rounds` rounds of `requests` per target, the order flipping each round."""
    names = list(targets)
    print(
        f"{args.concurrency} connections; {args.requests} requests per target in each of "
        f"{args.rounds} rounds, after {args.warmup} unmeasured ones"
    )
    for name, (url, backend) in targets.items():
        warm = asyncio.run(load(url, backend, args.warmup, args.concurrency))
        if warm.errors:
            print(f"  warm-up {name}: {dict(warm.errors)}")
    totals = {name: Run() for name in names}
    rounds: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    for number in range(args.rounds):
        order = names if number % 2 == 0 else names[::-1]
        this: dict[str, Any] = {}
        for name in order:
            url, backend = targets[name]
            run = asyncio.run(load(url, backend, args.requests, args.concurrency))
            totals[name].add(run)
            this[name] = summary(run)
            s = this[name]
            print(
                f"  round {number + 1:>2} {name:<6} p50 {s['p50_ms']:7.2f} ms  p99 "
                f"{s['p99_ms']:7.2f} ms  {s['rps']:8,.0f} req/s  errors {s['errors']}"
            )
        rounds.append(this)
    results = {name: summary(run) for name, run in totals.items()}
    per_round_p50 = [r["router"]["p50_ms"] - r["direct"]["p50_ms"] for r in rounds]
    return {
        "results": results,
        "router_vs_direct": compare(results["direct"], results["router"]),
        "median_of_round_p50_differences_ms": round(statistics.median(per_round_p50), 3),
        "rounds": rounds,
        "loadavg": {"before": load_before, "after": os.getloadavg()},
    }


def print_table(measured: dict[str, Any]) -> None:
    results, cmp = measured["results"], measured["router_vs_direct"]
    print()
    print(
        f"{'target':<8}{'requests':>10}{'errors':>8}{'req/s':>10}"
        f"{'mean ms':>10}{'p50 ms':>10}{'p99 ms':>10}"
    )
    for name, r in results.items():
        print(
            f"{name:<8}{r['requests']:>10,}{r['errors']:>8}{r['rps']:>10,.0f}"
            f"{r['mean_ms']:>10.2f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
        )
    print(
        f"router - direct: p50 {cmp['p50']['difference_ms']:+.2f} ms "
        f"(x{cmp['p50']['ratio']}), p99 {cmp['p99']['difference_ms']:+.2f} ms "
        f"(x{cmp['p99']['ratio']}), mean {cmp['mean']['difference_ms']:+.2f} ms "
        f"(x{cmp['mean']['ratio']}); req/s x{cmp['rps_ratio']}"
    )
    print(
        "median over rounds of the p50 difference: "
        f"{measured['median_of_round_p50_differences_ms']:+.2f} ms"
    )


# --------------------------------------------------------------------------- cluster


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.5)


def bench_pods(api: Any, namespace: str) -> list[Any]:
    core = client.CoreV1Api(api)
    return list(core.list_namespaced_pod(namespace, label_selector=OWNER_SELECTOR).items)


def ready_endpoints(api: Any, namespace: str, service: str) -> int:
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}"
    )
    return sum(
        1
        for s in slices.items
        for e in s.endpoints or []
        if e.conditions is not None and e.conditions.ready
    )


def service_phase(api: Any, namespace: str) -> str:
    status = current_status(custom_object(api, namespace, "realtimeservices", SERVICE))
    return str(status.get("phase") or "")


def cluster_ip(api: Any, namespace: str, name: str) -> str:
    ip = str(client.CoreV1Api(api).read_namespaced_service(name, namespace).spec.cluster_ip)
    if not any(ipaddress.ip_address(ip) in net for net in ALLOWED_NETWORKS):
        allowed = ", ".join(map(str, ALLOWED_NETWORKS))
        raise BenchError(f"Service {name} has ClusterIP {ip}, outside {allowed}: not contacted")
    return ip


def probe(url: str, backend: str | None) -> bool:
    async def once() -> str:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            return (await post(session, url, backend))[1]

    return asyncio.run(once()) == ""


def deploy(
    api: Any, kubectl: Kubectl, namespace: str, timeout: float
) -> tuple[dict[str, tuple[str, str | None]], dict[str, Any]]:
    """Applies the application and the service and waits until both targets answer; returns
    the targets (url, expected X-Inferops-Version) and what runs where."""
    kubectl("apply", "-n", namespace, "-f", str(APP_MANIFEST), "-f", "-", input=SERVICE_MANIFEST)
    print(f"applied AIApplication/{APPLICATION} and RealTimeService/{SERVICE} in {namespace}")
    t0 = time.monotonic()
    try:
        wait_until(
            lambda: service_phase(api, namespace) == "Running",
            timeout,
            f"{SERVICE} Running (is the operator watching {namespace}?)",
        )
        wait_until(
            lambda: (
                ready_endpoints(api, namespace, SERVICE) >= ROUTER_REPLICAS
                and ready_endpoints(api, namespace, VERSION_SERVICE) >= 1
            ),
            120,
            "every router pod and the model pod ready behind their Services",
        )
        router_ip = cluster_ip(api, namespace, SERVICE)
        direct_ip = cluster_ip(api, namespace, VERSION_SERVICE)
        targets = {
            "direct": (f"http://{direct_ip}:{VERSION_PORT}/", None),
            "router": (f"http://{router_ip}:{SERVICE_PORT}/", VERSION_LABEL),
        }
        for name, (url, backend) in targets.items():
            wait_until(partial(probe, url, backend), 60, f"a valid answer from {name}")
    except (BenchError, ApiException):
        report = pods_report(api, namespace, OWNER_SELECTOR)
        print(report or f"no pods of {SERVICE} in {namespace}", file=sys.stderr)
        raise
    print(f"{SERVICE} Running and answering after {time.monotonic() - t0:.0f} s")
    pods = [
        {
            "name": p.metadata.name,
            "component": (p.metadata.labels or {}).get(LABEL_COMPONENT),
            "node": p.spec.node_name,
            "ip": p.status.pod_ip,
            "resources": [
                {"container": c.name, **(c.resources.to_dict() if c.resources else {})}
                for c in p.spec.containers
            ],
        }
        for p in bench_pods(api, namespace)
    ]
    return targets, {
        "targets": {name: url for name, (url, _) in targets.items()},
        "version_service": VERSION_SERVICE,
        "router_replicas": ROUTER_REPLICAS,
        "pods": pods,
    }


def remove(api: Any, kubectl: Kubectl, namespace: str) -> None:
    kubectl("delete", "-n", namespace, "rts", SERVICE, "--ignore-not-found", "--wait=true")
    kubectl("delete", "-n", namespace, "aiapp", APPLICATION, "--ignore-not-found", "--wait=true")
    wait_until(lambda: not bench_pods(api, namespace), 120, f"{SERVICE}'s pods gone")


def run_in(api: Any, kubectl: Kubectl, namespace: str, args: argparse.Namespace) -> dict[str, Any]:
    targets, setup = deploy(api, kubectl, namespace, args.ready_timeout)
    for name, (url, _) in targets.items():
        print(f"  {name}: {url}")
    measured = measure(targets, args)
    version = client.VersionApi(api).get_code().git_version
    return {"cluster": {"kubernetes": version, **setup}, **measured}


def bridge_exists() -> bool:
    """`ip link show inferops0` succeeds: a real node runs on this machine."""
    shown = subprocess.run(
        ["ip", "link", "show", realnode.BRIDGE], capture_output=True, check=False
    )
    return shown.returncode == 0


def install_crds(kubectl: Kubectl) -> None:
    files = sorted((REPO / "crds").glob("*.yaml"))
    for f in files:
        kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager=inferops-bench",
            "-f", str(f),
        )  # fmt: skip
    for f in files:
        wait_established(kubectl, f)


def bench_flavors(cpu: str) -> list[dict[str, Any]]:
    """E2E_FLAVORS with the bench's flavor at `cpu` (request = limit: Guaranteed QoS)."""
    flavors: list[dict[str, Any]] = json.loads(json.dumps(E2E_FLAVORS))  # a deep copy
    for flavor in flavors:
        if flavor["name"] == FLAVOR:
            flavor.update(cpu=cpu, memory="256Mi")
    return flavors


def own_cluster(args: argparse.Namespace) -> tuple[dict[str, Any] | None, int]:
    """Starts a cluster with the real node, benchmarks, tears everything down."""
    bin_dir = cpmod.build(quiet=True)
    reason = realnode.unavailable_reason(bin_dir)
    if reason:
        print(f"router_cluster_bench: no real node: {reason}", file=sys.stderr)
        return None, 2
    # images first (cached; minutes when something changed): the node's bridge is up from
    # the start of the control plane, and only one node may run here at a time
    build = [sys.executable, str(REPO / "images" / "build.py")]
    subprocess.run(build, check=True, stdout=subprocess.DEVNULL)  # progress goes to stderr
    deadline = time.monotonic() + args.wait_for_node * 60
    while bridge_exists():
        if time.monotonic() > deadline:
            print(
                f"router_cluster_bench: {realnode.BRIDGE} still exists after "
                f"{args.wait_for_node:g} min: another real node runs here",
                file=sys.stderr,
            )
            return None, 2
        print(f"{realnode.BRIDGE} exists (another real node runs here): waiting 30 s")
        time.sleep(30)
    workdir = Path(tempfile.mkdtemp(prefix="inferops-bench-cp-"))
    cp = cpmod.ControlPlane(workdir, bin_dir, real_node=True, node_images=realnode.node_images())
    document: dict[str, Any] | None = None
    t0 = time.monotonic()
    try:
        cp.start(timeout=args.start_timeout)
        print(f"control plane and real node up in {time.monotonic() - t0:.0f} s ({workdir})")
        kubectl = Kubectl(kubectl_path(), cp.kubeconfig)
        install_crds(kubectl)
        api = config.new_client_from_config(config_file=str(cp.kubeconfig))
        try:
            for name in (OPERATOR_NAMESPACE, APPS_NAMESPACE):
                make_node_namespace(api, name)
            wait_for_default_service_account(api, APPS_NAMESPACE)
            with install_operator(cp.kubeconfig, api, flavors=bench_flavors(args.model_cpu)):
                print(f"operator installed by the chart (flavor {FLAVOR}: {args.model_cpu} CPU)")
                document = run_in(api, kubectl, APPS_NAMESPACE, args)
        finally:
            api.close()
    finally:
        print(f"tearing down the cluster (up {time.monotonic() - t0:.0f} s)")
        cp.stop()
        problems = cp.node_problems
        if problems:
            print("host NOT restored; still different:")
            for line in problems:
                print(f"  {line}")
        else:
            print("host restored: yes (nothing differs from before the node started)")
        keep = document is None or bool(problems)
        cp.cleanup(keep_logs=keep)
        if keep:
            print(f"control plane logs kept in {cp.logs_dir}")
    if document is None:
        return None, 1
    document["cluster"]["mode"] = "own"
    document["cluster"]["host_restored"] = not problems
    document["cluster"]["host_problems"] = problems
    return document, 0


def existing_cluster(args: argparse.Namespace) -> tuple[dict[str, Any] | None, int]:
    """A running cluster with the operator: the bench's objects in `--namespace`, removed after."""
    namespace = args.namespace
    api = config.new_client_from_config(config_file=str(args.kubeconfig))
    kubectl = Kubectl(kubectl_path(), args.kubeconfig)
    created = False
    try:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        try:
            core.read_namespace(namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            make_node_namespace(api, namespace, {"inferops-bench": "1"})
            created = True
            wait_for_default_service_account(api, namespace)
        else:
            for plural, name in (("aiapplications", APPLICATION), ("realtimeservices", SERVICE)):
                try:
                    custom.get_namespaced_custom_object(
                        "serving.inferops.dev", "v1alpha1", namespace, plural, name
                    )
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                else:
                    raise BenchError(
                        f"{plural}/{name} already exists in {namespace}: not overwritten "
                        "(delete it, or pick another --namespace)"
                    )
        try:
            document = run_in(api, kubectl, namespace, args)
        finally:
            remove(api, kubectl, namespace)
    finally:
        if created:
            delete_namespace(api, namespace)
        api.close()
    document["cluster"]["mode"] = "kubeconfig"
    document["cluster"]["namespace"] = namespace
    return document, 0


def environment() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "machine": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kubeconfig", type=Path, help="use this running cluster (operator installed)"
    )
    parser.add_argument(
        "--namespace", default="inferops-bench", help="with --kubeconfig: where to deploy"
    )
    parser.add_argument("--requests", type=int, default=2000, help="per target per round")
    parser.add_argument("--rounds", type=int, default=10, help="direct/router alternations")
    parser.add_argument("--concurrency", type=int, default=4, help="keep-alive connections")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests first")
    parser.add_argument(
        "--model-cpu",
        default="1",
        help=f"own cluster: CPU of flavor {FLAVOR} (request = limit), default 1",
    )
    parser.add_argument(
        "--wait-for-node",
        type=float,
        default=20,
        help="own cluster: minutes to wait while another real node runs",
    )
    parser.add_argument("--start-timeout", type=float, default=600, help="own cluster start")
    parser.add_argument("--ready-timeout", type=float, default=300, help="service Running")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    if args.kubeconfig is not None and not args.kubeconfig.is_file():
        print(f"router_cluster_bench: no kubeconfig at {args.kubeconfig}", file=sys.stderr)
        return 2

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the teardown

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    env = environment()
    try:
        if args.kubeconfig is not None:
            document, code = existing_cluster(args)
        else:
            document, code = own_cluster(args)
    # BenchError, ControlPlaneError, realnode's commands; Kubectl's failures are assertions
    except (RuntimeError, ApiException, AssertionError, subprocess.CalledProcessError) as exc:
        print(f"router_cluster_bench: {exc}", file=sys.stderr)
        return 2
    if document is None:
        return code
    print_table(document)
    document = {
        "benchmark": "router_cluster_bench",
        "settings": {
            "requests_per_round": args.requests,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "model_cpu": args.model_cpu if args.kubeconfig is None else None,
            "client": "python aiohttp, keep-alive, new connections each round",
            "body": SEED_BODY,
            "service": SERVICE_MANIFEST,
        },
        "environment": env,
        **document,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    failed = any(r["errors"] for r in document["results"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
