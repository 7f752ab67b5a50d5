"""`inferops batch-worker` (one pod of the Indexed Job) and `inferops batch run` (local).

`register(subparsers)` registers both on the `inferops` parser (`inferops.commands.Command`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yarl import URL

from inferops.contract.batch_worker import ConfigError, config_from_env
from inferops.contract.untrusted import UntrustedInputError, load_yaml_documents
from inferops.contract.worker_report import WorkerReport

if TYPE_CHECKING:  # the runner (aiohttp, storage) loads only when a command runs
    from inferops.worker.runner import Summary

TERMINATION_LOG = "/dev/termination-log"
TERMINATION_ENV = "INFEROPS_TERMINATION_LOG"
EXIT_FATAL = 1
EXIT_UNREADABLE = 2
EXIT_SIGTERM = 143


def _fail(command: str, message: str, code: int = EXIT_FATAL) -> int:
    print(f"inferops {command}: {message}", file=sys.stderr)
    return code


def write_termination_log(report: WorkerReport, environ: Mapping[str, str]) -> None:
    """Kubernetes shows (and the operator reads) this file as the termination message."""
    path = environ.get(TERMINATION_ENV) or TERMINATION_LOG
    if not environ.get(TERMINATION_ENV) and not (os.path.exists(path) and os.access(path, os.W_OK)):
        return
    try:
        Path(path).write_text(report.message(), encoding="utf-8")
    except OSError as exc:
        logging.getLogger(__name__).warning("cannot write %s: %s", path, exc.strerror)


async def _run_until_signalled(coroutine: Any) -> Summary:
    """Runs the worker; SIGTERM (pod deletion) cancels it, which saves the manifest first."""
    task: asyncio.Task[Summary] = asyncio.ensure_future(coroutine)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, task.cancel)
    return await task


def cmd_batch_worker(args: argparse.Namespace) -> int:
    from inferops.worker.runner import WorkerError, run_worker

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    environ = os.environ
    try:
        config = config_from_env(environ)
        summary = asyncio.run(_run_until_signalled(run_worker(config)))
    except (ConfigError, WorkerError) as exc:
        write_termination_log(WorkerReport(error=str(exc)), environ)
        return _fail("batch-worker", str(exc))
    except asyncio.CancelledError:
        return _fail(
            "batch-worker", "stopped by a signal; committed results are saved", EXIT_SIGTERM
        )
    result = summary.to_dict()
    write_termination_log(WorkerReport.model_validate(result), environ)
    print(json.dumps(result))
    return 0


def _documents(path: str, kind: str) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"{path}: cannot read: {reason}") from None
    try:
        documents = load_yaml_documents(text)
    except UntrustedInputError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from None
    found = [d for d in documents if isinstance(d, dict) and d.get("kind") == kind]
    if not found:
        raise ValueError(f"{path}: no {kind} in the file")
    return found


def cmd_batch_run(args: argparse.Namespace) -> int:
    from inferops.worker.runner import WorkerError, run_local_async

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        service = _documents(args.file, "BatchService")[0]
        apps = _documents(args.app, "AIApplication")
    except ValueError as exc:
        return _fail("batch run", str(exc), EXIT_UNREADABLE)
    wanted = (service.get("spec") or {}).get("application")
    app = next((a for a in apps if (a.get("metadata") or {}).get("name") == wanted), apps[0])
    overrides: dict[str, Any] = {}
    if args.endpoint:
        overrides["s3_endpoint"] = args.endpoint
    if args.request_timeout is not None:  # 0 is refused by the parser, never ignored
        overrides["request_timeout_seconds"] = args.request_timeout
    if args.allow_network:
        overrides["allowed_networks"] = args.allow_network
    task_id = args.task_id or uuid.uuid4().hex[:12]
    try:
        summaries = asyncio.run(
            run_local_async(service, app, args.model_url, task_id, args.workers, **overrides)
        )
    except (ConfigError, WorkerError) as exc:
        return _fail("batch run", str(exc))
    manifests = sorted((m for s in summaries for m in s.manifests), key=lambda m: (len(m), m))
    for manifest in manifests:
        print(manifest)
    total = {
        "task_id": task_id,
        "total": sum(s.total for s in summaries),
        "succeeded": sum(s.succeeded for s in summaries),
        "failed": sum(s.failed for s in summaries),
        "manifests": manifests,
    }
    print(json.dumps(total))
    return 0


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds > 0 (`0`, `nan`, `inf` are refused)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, not {text!r}")
    return value


def model_url(text: str) -> str:
    """An argparse type: an http:// or https:// URL with a host, as aiohttp reads it, so a
    bad URL is one error before any work instead of a failure per source."""
    example = "e.g. http://127.0.0.1:8080"
    try:
        url = URL(text)
        port = url.port  # a port out of range or not a number raises ValueError
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL ({exc}); {example}") from None
    if url.scheme not in ("http", "https") or not url.host or port is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an http:// or https:// URL with a host; {example}"
        )
    if url.query_string or url.fragment:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the model URL is a base the request path is added to: no query or fragment"
        )
    return text


def register(subparsers: Any) -> None:
    """Registers `batch-worker` and `batch run` on the `inferops` subparsers."""
    worker = subparsers.add_parser(
        "batch-worker",
        help="run one batch worker (config from $INFEROPS_BATCH_CONFIG, index from "
        "$JOB_COMPLETION_INDEX)",
    )
    worker.set_defaults(func=cmd_batch_worker)

    batch = subparsers.add_parser("batch", help="batch services without a cluster")
    batch_sub = batch.add_subparsers(dest="batch_command", required=True, metavar="COMMAND")
    run = batch_sub.add_parser("run", help="run a batch service locally with the real worker")
    run.add_argument("-f", "--file", required=True, metavar="BATCHSERVICE.yaml")
    run.add_argument("--app", required=True, metavar="AIAPPLICATION.yaml")
    run.add_argument(
        "--model-url",
        required=True,
        type=model_url,
        metavar="URL",
        help="e.g. http://127.0.0.1:8080",
    )
    run.add_argument(
        "--task-id",
        help="batch task ID (default: a new random one); reuse it to resume an interrupted run",
    )
    run.add_argument("--workers", type=int, help="workers (default: spec.computeNodes)")
    run.add_argument(
        "--endpoint",
        help="S3 API endpoint (default: spec.storage.endpoint, then $INFEROPS_S3_ENDPOINT)",
    )
    run.add_argument(
        "--request-timeout",
        type=seconds,
        metavar="SECONDS",
        help="per-request timeout, > 0 (default 60)",
    )
    run.add_argument(
        "--allow-network",
        action="append",
        metavar="CIDR",
        help="let https:// sources reach this private or loopback network, e.g. a local "
        "object store (repeatable; default: public addresses only)",
    )
    run.set_defaults(func=cmd_batch_run)
