"""The operator at scale (issue 14): N RealTimeServices settle, side by side with the control
plane alone making the same children ready.

For each N of `--services` it starts a fresh test control plane (tests/cluster/controlplane.py,
kwok nodes sized for every pod, no real node) with an audit log of the operator's own user,
installs the CRDs and starts `inferops operator` as a local process (its own client
certificate, Common Name `inferops-bench-operator`, group system:masters). Then:

1. operator: the AIApplication `iris` (two versions, examples/iris-application.yaml) in each
   namespace and N RealTimeServices (`--per-namespace` per namespace, each with both versions
   at one node of cpu.2u4g, so 2 model pods + 2 router pods), created as fast as the API
   server takes them; the time until every one has status.phase Running, the operator's CPU
   seconds (utime+stime from /proc/<pid>/stat) and peak RSS (VmHWM), and the API requests
   the operator made (audit events of its user from its start until settled, by verb);
2. control plane only: the operator stopped, `inferops render` of the same services applied
   by `kubectl apply` into fresh namespaces; the time until every Deployment is ready
   (the physical limit of this machine for those children).

It prints one row per N: settle s, control-plane-only s, their ratio, CPU ms per service,
peak RSS MiB, API requests per service and the rollout p50/p99; `--out` writes the same as
JSON (with the requests by verb).

    .venv/bin/python bench/scale_bench.py --services 20,100 --out /tmp/scale.json

This is a benchmark, not a test: nothing under tests/ runs it and it asserts nothing.
3. with the operator still running and every service present, `--changes` patches of one
   service's traffic split, each timed until its router Deployment has a new generation (the
   rollout has begun): p50 and p99 (nearest rank). Requests are counted before these.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "tests" / "cluster"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import controlplane as cpmod  # noqa: E402
from k8s_helpers import Kubectl, kubectl_path, wait_established  # noqa: E402
from kubernetes import client, config  # noqa: E402
from operator_process import metric_samples, running_operator  # noqa: E402

GROUP = "serving.inferops.dev"
VERSION = "v1alpha1"
OPERATOR_USER = "inferops-bench-operator"
APPLICATION = REPO / "examples" / "iris-application.yaml"
PODS_PER_SERVICE = 4  # two versions of one node + two router replicas
AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: [{OPERATOR_USER}]
- level: None
"""


@dataclass
class Result:
    services: int
    namespaces: int
    operator_settle_s: float
    control_plane_only_s: float
    ratio: float
    cpu_ms_per_service: float
    peak_rss_mib: float
    api_requests: int
    api_requests_per_service: float
    rollout_p50_s: float
    rollout_p99_s: float
    passes_per_service: float = 0.0
    requests_by_verb: dict[str, int] = field(default_factory=dict)


def _service(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RealTimeService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "resourcePool": "public",
            "versions": [
                {
                    "application": "iris",
                    "version": v,
                    "trafficRatio": r,
                    "specification": "cpu.2u4g",
                    "computeNodes": 1,
                }
                for v, r in (("1.0.0", 70), ("2.0.0", 30))
            ],
        },
    }


def _layout(n: int, per_namespace: int, prefix: str) -> dict[str, list[str]]:
    """Namespace -> the names of its services."""
    layout: dict[str, list[str]] = {}
    for i in range(n):
        layout.setdefault(f"{prefix}-{i // per_namespace}", []).append(f"svc-{i}")
    return layout


def _application(namespace: str) -> dict[str, Any]:
    app = copy.deepcopy(yaml.safe_load(APPLICATION.read_text()))
    app["metadata"]["namespace"] = namespace
    return dict(app)


def _proc_cpu_s(pid: int) -> float:
    # fields after the ")" of comm: utime and stime are the 12th and 13th
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def _audit_requests(path: Path) -> Counter[str]:
    """The operator's requests by verb: one audit ID each (a watch logs two stages)."""
    seen: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event.get("user", {}).get("username") == OPERATOR_USER:
                seen[event["auditID"]] = event.get("verb", "?")
    return Counter(seen.values())


def _wait(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _running(custom: Any, names: set[tuple[str, str]]) -> int:
    items = custom.list_cluster_custom_object(GROUP, VERSION, "realtimeservices")["items"]
    return sum(
        1
        for item in items
        if (item["metadata"]["namespace"], item["metadata"]["name"]) in names
        and (item.get("status") or {}).get("phase") == "Running"
    )


def _deployments_ready(apps: Any, namespaces: set[str], expected: int) -> bool:
    ready = 0
    for item in apps.list_deployment_for_all_namespaces().items:
        if item.metadata.namespace in namespaces:
            want = item.spec.replicas or 0
            ready += int((item.status.ready_replicas or 0) >= want > 0)
    return ready >= expected


def _apply_file(kubectl: Kubectl, docs: list[dict[str, Any]], path: Path) -> None:
    path.write_text(yaml.safe_dump_all(docs))
    kubectl("apply", "-f", str(path), timeout=600)


@dataclass
class OperatorRun:
    settle: float  # seconds until every service is Running
    cpu: float  # the operator's CPU seconds until then
    rss: float  # its peak RSS, MiB
    requests: Counter[str]  # its API requests by verb until then
    passes: float  # passes run until then
    rollouts: list[float]  # spec change to router rolling, seconds


def _operator_phase(
    cp: cpmod.ControlPlane, kubectl: Kubectl, api: Any, args: argparse.Namespace, n: int
) -> OperatorRun:
    assert cp.pki is not None
    crt, key = cp.pki.issue("bench-operator", OPERATOR_USER, ("system:masters",))
    op_kc = cpmod.write_kubeconfig(
        cp.workdir / "operator.kubeconfig",
        server=cp.server,
        ca=cp.pki.ca_crt,
        crt=crt,
        key=key,
        user=OPERATOR_USER,
    )
    layout = _layout(n, args.per_namespace, "op")
    names = {(ns, s) for ns, svcs in layout.items() for s in svcs}
    custom = client.CustomObjectsApi(api)
    work = cp.workdir / "bench"
    work.mkdir(exist_ok=True)
    with running_operator(op_kc, (), log=cp.logs_dir / "operator.log") as operator:
        t0 = time.monotonic()
        for ns, svcs in layout.items():
            docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
            docs += [_application(ns), *(_service(s, ns) for s in svcs)]
            _apply_file(kubectl, docs, work / f"{ns}.yaml")
        _wait(lambda: _running(custom, names) == n, args.timeout, f"{n} services Running", 2)
        settle = time.monotonic() - t0
        cpu = _proc_cpu_s(operator.pid)
        rss = _proc_hwm_mib(operator.pid)
        requests = _audit_requests(cp.logs_dir / "audit.log")
        passes = sum(metric_samples(operator.metrics_url, "inferops_reconciles_total").values())
        rollouts = _spec_changes(api, *next(iter(names)), args.changes)
    return OperatorRun(settle, cpu, rss, requests, passes, rollouts)


def _spec_changes(api: Any, namespace: str, name: str, changes: int) -> list[float]:
    """Seconds from a patch of the traffic split of one service (every other service
    present) to its router Deployment's new generation: the rollout has begun."""
    custom = client.CustomObjectsApi(api)
    apps = client.AppsV1Api(api)
    router = f"{name}-router"
    times = []
    for i in range(changes):
        before = apps.read_namespaced_deployment(router, namespace).metadata.generation
        first = 60 if i % 2 == 0 else 70
        body = _service(name, namespace)
        for v, ratio in zip(body["spec"]["versions"], (first, 100 - first), strict=True):
            v["trafficRatio"] = ratio
        t0 = time.monotonic()
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "realtimeservices", name, {"spec": body["spec"]}
        )

        def rolled(generation: int = before) -> bool:
            return (
                int(apps.read_namespaced_deployment(router, namespace).metadata.generation)
                > generation
            )

        _wait(rolled, 60, f"{namespace}/{router} rolling", 0.02)
        times.append(time.monotonic() - t0)
    return times


def _control_plane_phase(
    kubectl: Kubectl, api: Any, args: argparse.Namespace, n: int, work: Path
) -> float:
    """`inferops render` of the same services, applied by kubectl with no operator running."""
    layout = _layout(n, args.per_namespace, "cp")
    rendered: list[Path] = []
    for ns, svcs in layout.items():
        source = work / f"{ns}-in.yaml"
        source.write_text(yaml.safe_dump_all([_application(ns), *(_service(s, ns) for s in svcs)]))
        out = subprocess.run(
            [sys.executable, "-m", "inferops.cli", "render", str(source)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        target = work / f"{ns}.yaml"
        target.write_text(f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\n{out}")
        rendered.append(target)
    apps = client.AppsV1Api(api)
    t0 = time.monotonic()
    for target in rendered:
        kubectl("apply", "-f", str(target), timeout=600)
    # three Deployments per service: two versions and the router
    _wait(
        lambda: _deployments_ready(apps, set(layout), 3 * n),
        args.timeout,
        f"{3 * n} Deployments ready",
        2,
    )
    return time.monotonic() - t0


def run_one(n: int, args: argparse.Namespace) -> Result:
    # the operator's pods stay while the control-plane-only run adds as many again
    pods = 2 * PODS_PER_SERVICE * n
    public_nodes = max(1, math.ceil(pods / 1000))
    pods_per_node = max(110, math.ceil(pods / public_nodes) + 20)
    workdir = Path(tempfile.mkdtemp(prefix="inferops-scale-cp-"))
    policy = workdir / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    cp = cpmod.ControlPlane(
        workdir,
        cpmod.build(quiet=True),
        nodes=cpmod.kwok_nodes(pods_per_node, public_nodes),
        real_node=False,
        apiserver_args=(
            f"--audit-policy-file={policy}",
            f"--audit-log-path={workdir / 'logs' / 'audit.log'}",
            "--audit-log-format=json",
            "--audit-log-maxsize=0",
        ),
    )
    cp.start()
    try:
        kubectl = Kubectl(kubectl_path(), cp.kubeconfig)
        for crd in sorted((REPO / "crds").glob("*.yaml")):
            kubectl("apply", "--server-side", "-f", str(crd))
            wait_established(kubectl, crd)
        api = config.new_client_from_config(str(cp.kubeconfig))
        run = _operator_phase(cp, kubectl, api, args, n)
        baseline = _control_plane_phase(kubectl, api, args, n, cp.workdir / "bench")
    finally:
        cp.stop()
        cp.cleanup(keep_logs=args.keep_logs)
    total = sum(run.requests.values())
    return Result(
        services=n,
        namespaces=math.ceil(n / args.per_namespace),
        operator_settle_s=round(run.settle, 1),
        control_plane_only_s=round(baseline, 1),
        ratio=round(run.settle / baseline, 2),
        cpu_ms_per_service=round(run.cpu * 1000 / n),
        peak_rss_mib=round(run.rss),
        api_requests=total,
        api_requests_per_service=round(total / n, 1),
        rollout_p50_s=_quantile(run.rollouts, 0.50),
        rollout_p99_s=_quantile(run.rollouts, 0.99),
        passes_per_service=round(run.passes / n, 1),
        requests_by_verb=dict(sorted(run.requests.items())),
    )


def _quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (with few changes p99 is the slowest one)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 2)


def _table(results: list[Result]) -> str:
    head = (
        "| services | operator settle s | control-plane-only s | ratio | CPU ms/service "
        "| peak RSS MiB | API requests/service | passes/service "
        "| spec change to rollout p50 / p99 s |"
    )
    rows = [head, "|---|---|---|---|---|---|---|---|---|"]
    rows += [
        f"| {r.services} | {r.operator_settle_s} | {r.control_plane_only_s} | {r.ratio} "
        f"| {r.cpu_ms_per_service} | {r.peak_rss_mib} | {r.api_requests_per_service} "
        f"| {r.passes_per_service} | {r.rollout_p50_s} / {r.rollout_p99_s} |"
        for r in results
    ]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", default="100", help="comma-separated N (default 100)")
    parser.add_argument("--per-namespace", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per phase")
    parser.add_argument(
        "--changes", type=int, default=20, help="spec changes timed to the router rolling"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the logs (with operator.log, audit.log)"
    )
    args = parser.parse_args()
    results = []
    for n in (int(x) for x in args.services.split(",")):
        result = run_one(n, args)
        print(json.dumps(asdict(result)), flush=True)
        results.append(result)
    print(_table(results))
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
