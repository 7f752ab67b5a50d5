"""Runs `inferops operator` for real (Kopf, watch streams, HTTP) against the test cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.s3server import free_port, wait_until_serving


@dataclass(frozen=True)
class Operator:
    log: Path
    metrics_url: str
    pid: int


@contextmanager
def running_operator(
    kubeconfig: Path,
    namespaces: Sequence[str],
    extra: Sequence[str] = (),
    log: Path | None = None,
) -> Iterator[Operator]:
    """Starts the operator, waits for its liveness endpoint, yields its log and metrics."""
    port = free_port()
    metrics_port = free_port()
    if log is None:
        log = Path(tempfile.mkstemp(prefix="inferops-operator-", suffix=".log")[1])
    args = [
        sys.executable,
        "-m",
        "inferops.cli",
        "operator",
        "--liveness",
        f"http://127.0.0.1:{port}/healthz",
        "--metrics-port",
        str(metrics_port),
        *extra,
    ]
    for namespace in namespaces:
        args += ["--namespace", namespace]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        )
    try:
        wait_until_serving(
            f"http://127.0.0.1:{port}/healthz",
            process,
            60,
            "the operator",
            lambda: f":\n{log.read_text()}",
        )
        yield Operator(log, f"http://127.0.0.1:{metrics_port}/metrics", process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            # A pod's operator has terminationGracePeriodSeconds to stop; one that hangs on
            # SIGTERM is killed there too, mid-pass.
            raise AssertionError(
                f"the operator did not stop on SIGTERM within 20 s: {log}"
            ) from None


def metric_samples(url: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The operator's samples of one metric, by their sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }
