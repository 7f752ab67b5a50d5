"""Real nginx running a generated router config, and small upstreams to put behind it.

Everything listens on loopback only. `running_router` starts Debian's nginx on a free port
with the config of `inferops.resources.nginx.nginx_config` in a temporary directory, waits for
the router's health location, and stops nginx (master and workers) on exit.
`running_upstreams` starts named HTTP servers in one separate Python process: each answers
any request with its own name as the body (and the size of the request body it received in
`X-Body-Bytes`) and echoes WebSocket messages prefixed with its name. `fire` sends many
requests concurrently over keep-alive connections and records who answered each one.

Run as a script (`python tests/router_support.py upstreams NAME...`) this file is that
upstream process: it prints `{"NAME": PORT, ...}` once listening and exits when its
standard input closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from inferops.contract.router import (
    HEALTH_PATH as AGENT_HEALTH_PATH,
)
from inferops.contract.router import (
    Pairing,
    RouterAgentConfig,
    Target,
)
from inferops.resources.nginx import (
    HEALTH_PATH,
    VERSION_HEADER,
    AgentLink,
    Backend,
    RateLimit,
    Routing,
    nginx_config,
)

UPSTREAM_HEADER = "X-Upstream"
BODY_HEADER = "X-Body-Bytes"  # how many request body bytes the upstream received
PATH_HEADER = "X-Path"  # the path and query the upstream received
COUNT_PATH = "/__test/seen"  # GET: how many requests the upstream served, and the last one
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_binary() -> str:
    """The nginx executable. Raises (so tests fail, never skip) when it is not installed."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise RuntimeError("nginx is not installed (Debian: apt-get install nginx-light)")
    return found


# ---- nginx ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Router:
    port: int
    runtime_dir: Path
    config: str
    process: subprocess.Popen[bytes]
    metrics_port: int | None = None  # the router agent's, when it runs
    agent_pid: int | None = None
    link: AgentLink | None = None  # how nginx reaches the agent (for a new config)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log(self) -> str:
        return _read(self.runtime_dir / "nginx.log")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def nginx_check(config: str) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a config (written to a temporary directory that also holds its paths)."""
    with tempfile.TemporaryDirectory(prefix="inferops-nginx-t-") as tmp:
        path = Path(tmp) / "nginx.conf"
        path.write_text(config, encoding="utf-8")
        return subprocess.run(
            [nginx_binary(), "-t", "-q", "-e", "stderr", "-p", tmp, "-c", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_nginx(process: subprocess.Popen[bytes]) -> None:
    """Graceful quit, then fast shutdown, then SIGKILL of nginx's own process group."""
    pgid = process.pid  # start_new_session=True: the master leads its own group
    for sig in (signal.SIGQUIT, signal.SIGTERM):
        if process.poll() is not None:
            break
        process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT)
    if process.poll() is None:
        os.killpg(pgid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _group_alive(pgid):  # workers normally exit before the master; make sure
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            break
        time.sleep(0.05)


@contextlib.contextmanager
def running_nginx(make_config: Callable[[str, str], str], attempts: int = 3) -> Iterator[Router]:
    """nginx with `make_config(listen, runtime_dir)` on a free loopback port, until exit."""
    binary = nginx_binary()
    with tempfile.TemporaryDirectory(prefix="inferops-nginx-") as tmp:
        os.chmod(tmp, 0o755)  # nginx workers may run as another user when started as root
        runtime = Path(tmp)
        router: Router | None = None
        for _ in range(attempts):
            port = free_port()
            config = make_config(f"127.0.0.1:{port}", tmp)
            (runtime / "nginx.conf").write_text(config, encoding="utf-8")
            with (runtime / "nginx.log").open("wb") as log:
                process = subprocess.Popen(
                    [
                        binary,
                        "-e",
                        "stderr",
                        "-p",
                        tmp,
                        "-c",
                        str(runtime / "nginx.conf"),
                        "-g",
                        "daemon off;",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            candidate = Router(port, runtime, config, process)
            deadline = time.monotonic() + START_TIMEOUT
            while process.poll() is None and not _healthy(port):
                if time.monotonic() > deadline:
                    _stop_nginx(process)
                    raise RuntimeError(f"nginx did not answer {HEALTH_PATH}:\n{candidate.log()}")
                time.sleep(0.05)
            if process.poll() is None:
                router = candidate
                break
            if "Address already in use" not in candidate.log():  # a lost port race: retry
                raise RuntimeError(f"nginx exited with {process.returncode}:\n{candidate.log()}")
        if router is None:
            raise RuntimeError(f"nginx found no free port in {attempts} attempts")
        try:
            yield router
        finally:
            _stop_nginx(router.process)


@contextlib.contextmanager
def running_router(
    backends: Sequence[Backend],
    *,
    websocket: bool = False,
    limit: RateLimit | None = None,
    replicas: int = 1,
    worker_processes: str = "1",
    version_header: bool = True,
    routing: Routing | None = None,
    agent: bool = False,
    pairing: Pairing | None = None,
    max_shadow_in_flight: int = 64,
) -> Iterator[Router]:
    """nginx running exactly what the operator generates for these backends; with `agent`
    (implied by shadows or `pairing`), `inferops router-agent` beside it, as in a router
    pod."""
    agent = agent or pairing is not None or any(b.shadow_percent for b in backends)
    with contextlib.ExitStack() as stack:
        link = None
        metrics_port = agent_pid = None
        if agent:
            runtime = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ifr-")))
            os.chmod(runtime, 0o755)
            log_port = free_udp_port()
            link = AgentLink(str(runtime), pairing=pairing is not None, log_port=log_port)
            metrics_port = free_port()
            config = RouterAgentConfig(
                service="svc",
                runtime_dir=str(runtime),
                metrics_port=metrics_port,
                metrics_host="127.0.0.1",
                log_port=log_port,
                targets=tuple(
                    Target(
                        upstream=b.name,
                        label=b.shown,
                        address=b.address,
                        shadow_percent=b.shadow_percent,
                    )
                    for b in backends
                ),
                pairing=pairing,
                shadow_timeout_seconds=10.0,
                max_shadow_in_flight=max_shadow_in_flight,
            )
            agent_pid = stack.enter_context(running_agent(config, runtime)).pid

        def make(listen: str, runtime_dir: str) -> str:
            return nginx_config(
                backends,
                websocket=websocket,
                limit=limit,
                replicas=replicas,
                listen=listen,
                runtime_dir=runtime_dir,
                worker_processes=worker_processes,
                version_header=version_header,
                routing=routing,
                link=link,
            )

        router = stack.enter_context(running_nginx(make))
        yield dataclasses.replace(router, metrics_port=metrics_port, agent_pid=agent_pid, link=link)


@contextlib.contextmanager
def running_agent(config: RouterAgentConfig, runtime: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`inferops router-agent` with this configuration, until exit (SIGTERM)."""
    path = runtime / "router.json"
    path.write_text(config.to_json(), encoding="utf-8")
    with (runtime / "agent.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "inferops.cli", "router-agent", "--config", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "POD_NAME": "router-0"},
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        url = f"http://127.0.0.1:{config.metrics_port}{AGENT_HEALTH_PATH}"
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"router agent did not start:\n{_read(runtime / 'agent.log')}")
            time.sleep(0.05)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT * 3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)


def reload(router: Router, backends: Sequence[Backend], **options: Any) -> None:
    """nginx of `router` on a new config for these backends (SIGHUP: new workers, the old
    ones finish what they serve)."""
    config = nginx_config(
        backends,
        listen=f"127.0.0.1:{router.port}",
        runtime_dir=str(router.runtime_dir),
        link=router.link,
        **options,
    )
    (router.runtime_dir / "nginx.conf").write_text(config, encoding="utf-8")
    router.process.send_signal(signal.SIGHUP)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def scrape(router: Router) -> dict[str, float]:
    """The router agent's metrics: `name{labels}` -> value (labels as Prometheus prints)."""
    with urllib.request.urlopen(router.metrics_url, timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


# ---- upstreams ------------------------------------------------------------------------------


def _upstream_app(name: str) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await ws.send_str(f"{name}:{message.data}")
                elif message.type == aiohttp.WSMsgType.BINARY:
                    await ws.send_bytes(name.encode() + b":" + message.data)
            return ws
        if request.path == COUNT_PATH:
            return web.json_response(seen)
        body = await request.read()
        seen["requests"] += 1
        seen["last"] = {
            "path": request.raw_path,
            "method": request.method,
            "body": body.decode(errors="replace"),
            "requestId": request.headers.get("X-Request-Id", ""),
        }
        if name.startswith("slow"):  # a shadow that takes a second to answer
            await asyncio.sleep(1.0)
        if name.startswith("model"):  # a small model's few milliseconds
            await asyncio.sleep(0.005)
        headers = {
            UPSTREAM_HEADER: name,
            BODY_HEADER: str(len(body)),
            PATH_HEADER: request.raw_path,
        }
        if name.startswith("json"):  # a JSON answer; "json-b" differs only in key order
            text = '{"b": 2, "a": 1}' if name.startswith("json-b") else '{"a":1,"b":2}'
            return web.Response(text=text, content_type="application/json", headers=headers)
        if name.startswith("fail"):
            return web.Response(status=500, text=name, headers=headers)
        if name.startswith("flaky") and random.random() < 0.2:  # a fifth of its answers fail
            return web.Response(status=500, text=name, headers=headers)
        return web.Response(text=name, headers=headers)

    seen: dict[str, Any] = {"requests": 0, "last": None}
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def _serve_upstreams(names: Sequence[str]) -> None:
    ports: dict[str, int] = {}
    for name in names:
        runner = web.AppRunner(_upstream_app(name), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        ports[name] = int(runner.addresses[0][1])
    print(json.dumps(ports), flush=True)
    await asyncio.Event().wait()


def _exit_when_stdin_closes() -> None:
    sys.stdin.read()
    os._exit(0)


@contextlib.contextmanager
def running_upstreams(*names: str) -> Iterator[dict[str, str]]:
    """Upstream servers named `names` in one child process; yields name -> "host:port"."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "upstreams", *names],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
        line = process.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"upstream servers did not start (exit {process.poll()})")
        ports: dict[str, int] = json.loads(line)
        yield {name: f"127.0.0.1:{ports[name]}" for name in names}
    finally:
        process.stdin.close()  # the child exits when its stdin closes
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
        process.stdout.close()


# ---- load -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    body: str  # the answering upstream's name for a 200 from `running_upstreams`
    backend: str | None  # the router's X-Inferops-Version header
    upstream: str | None  # the upstream's own X-Upstream header


async def _fire(
    url: str, total: int, concurrency: int, method: str, json_body: Any
) -> tuple[list[Reply], float]:
    replies: list[Reply] = []
    remaining = total
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with session.request(method, url, json=json_body) as response:
                    body = await response.text()
                    replies.append(
                        Reply(
                            response.status,
                            body,
                            response.headers.get(VERSION_HEADER),
                            response.headers.get(UPSTREAM_HEADER),
                        )
                    )

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(concurrency, total))))
        return replies, time.perf_counter() - start


def fire(
    url: str, total: int, concurrency: int = 32, method: str = "GET", json_body: Any = None
) -> tuple[list[Reply], float]:
    """`total` requests, `concurrency` at a time over keep-alive connections.

    Returns the replies and the seconds from the first request to the last reply.
    """
    return asyncio.run(_fire(url, total, concurrency, method, json_body))


def _main(argv: Sequence[str]) -> int:
    if len(argv) < 2 or argv[0] != "upstreams":
        print("usage: router_support.py upstreams NAME...", file=sys.stderr)
        return 2
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    asyncio.run(_serve_upstreams(argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
