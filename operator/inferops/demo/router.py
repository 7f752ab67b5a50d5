"""The router on this machine: Debian's nginx running a config the operator's code wrote."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

from inferops.demo.errors import DemoError
from inferops.demo.processes import free_port, start, stop
from inferops.resources.nginx import HEALTH_PATH


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


@contextlib.contextmanager
def nginx_router(
    make_config: Callable[[str, str], str], work_dir: Path, attempts: int = 3
) -> Iterator[int]:
    """nginx running `make_config(listen, runtime_dir)` on a free loopback port; yields it.

    The config, its runtime files and `nginx.log` live in `work_dir/router`. Started as
    root, nginx's workers run as another user and need to reach that folder's temp paths
    (for request bodies over 16 KiB), so `work_dir` should be traversable by everyone.
    """
    binary = nginx_binary()
    if binary is None:
        raise DemoError("nginx is not installed (Debian: apt-get install nginx-light)")
    runtime = work_dir / "router"
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o755)  # started as root, nginx's workers run as another user
    config_path = runtime / "nginx.conf"
    for _ in range(attempts):
        port = free_port()
        config_path.write_text(make_config(f"127.0.0.1:{port}", str(runtime)), encoding="utf-8")
        command = [binary, "-e", "stderr", "-p", str(runtime), "-c", str(config_path)]
        command += ["-g", "daemon off;"]
        url = f"http://127.0.0.1:{port}{HEALTH_PATH}"
        process = start(command, runtime / "nginx.log", url, "nginx", None)
        if process is not None:
            break
    else:
        raise DemoError(f"nginx found no free port in {attempts} attempts")
    try:
        yield port
    finally:
        stop(process, signal.SIGQUIT)
