"""Processes on loopback: start one, wait until it answers, stop it and its children.

`model_server` runs `inferops model-server` on a free port; `bench/` and the tests use it
as well as the demo.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from inferops.demo.errors import DemoError

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file ("" when it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def start(
    command: list[str], log_path: Path, ready_url: str, what: str, env: Mapping[str, str] | None
) -> subprocess.Popen[bytes] | None:
    """Starts `command` and waits for `ready_url`; None when it exited (e.g. port taken)."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while process.poll() is None:
        if _answers(ready_url):
            return process
        if time.monotonic() > deadline:
            stop(process, signal.SIGTERM)
            raise DemoError(f"{what} did not answer {ready_url}:\n{tail(log_path)}")
        time.sleep(0.05)
    if "address already in use" in tail(log_path).lower():
        return None
    raise DemoError(f"{what} exited with code {process.returncode}:\n{tail(log_path)}")


def stop(process: subprocess.Popen[bytes], first: signal.Signals) -> None:
    """Stops a process started in its own session, then anything left in its group."""
    for sig in (first, signal.SIGTERM):
        if process.poll() is None:
            process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_TIMEOUT)
    if process.poll() is None:
        process.kill()
        process.wait(STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # e.g. nginx workers outliving their master


@contextlib.contextmanager
def model_server(
    model: Path, log_path: Path, env: Mapping[str, str] | None = None, attempts: int = 3
) -> Iterator[str]:
    """`inferops model-server` for `model` on a free loopback port; yields "host:port"."""
    for _ in range(attempts):
        port = free_port()
        command = [sys.executable, "-m", "inferops.cli", "model-server", "--model", str(model)]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        url = f"http://127.0.0.1:{port}/health"
        process = start(command, log_path, url, "the model server", env)
        if process is not None:
            break
    else:
        raise DemoError(f"the model server found no free port in {attempts} attempts")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop(process, signal.SIGTERM)
