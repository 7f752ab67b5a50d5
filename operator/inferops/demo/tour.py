"""The tour: a list of steps sharing one `Demo` state, run in order until one fails."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from inferops.demo.batch import run_batch
from inferops.demo.errors import DemoError
from inferops.demo.realtime import read_examples, route_traffic, start_model_servers
from inferops.demo.shipped import examples_dir
from inferops.demo.state import Demo

Step = tuple[str, Callable[[Demo], None]]
STEPS: list[Step] = [
    ("Read and validate the iris examples", read_examples),
    ("Start one model server per version", start_model_servers),
    ("Route traffic through the nginx router", route_traffic),
    ("Run the folder batch service with the real worker", run_batch),
]


def run_demo(out_dir: Path | None = None) -> int:
    """Runs the tour; returns the exit code. Files (logs, nginx.conf) go to `out_dir`."""
    print("Inferops demo: what the operator deploys, on this machine without a cluster")
    try:
        examples = examples_dir()
    except DemoError as exc:
        print(f"inferops demo: {exc}", file=sys.stderr)
        return 1
    with contextlib.ExitStack() as stack:
        if out_dir is None:
            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="inferops-")))
            work_dir.chmod(0o755)  # nginx workers (another user under root) use work_dir/router
        else:
            work_dir = out_dir.resolve()
            work_dir.mkdir(parents=True, exist_ok=True)
        demo = Demo(examples, work_dir, stack)
        for number, (title, step) in enumerate(STEPS, 1):
            print(f"[{number}/{len(STEPS)}] {title}")
            try:
                step(demo)
            except DemoError as exc:
                print(f"inferops demo: {exc}", file=sys.stderr)
                return 1
    if out_dir is not None:
        print(f"Logs and the router config are in {out_dir}")
    print("Done.")
    return 0
