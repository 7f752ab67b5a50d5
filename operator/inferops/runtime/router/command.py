"""`inferops router-agent --config FILE`: the access-log listener, the shadow relay and the
metrics server of one router pod, until SIGTERM.

Sockets live in the configuration's runtime directory (an emptyDir nginx shares): the log
socket (unix datagrams) and the relay socket (HTTP) are the agent's; nginx's stub_status
socket is read at each scrape for the requests in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest
from pydantic import ValidationError

from inferops.contract.agent import (
    DEFAULT_REDACT_HEADERS,
    DEFAULT_REDACT_QUERY_PARAMETERS,
    POD_ENV,
    UNKNOWN,
    name_list,
)
from inferops.contract.router import (
    HEALTH_PATH,
    METRICS_PATH,
    MIRROR_SOCKET,
    RELAY_SOCKET,
    STATUS_PATH,
    STATUS_SOCKET,
    RouterAgentConfig,
)
from inferops.runtime.agent.collector import Collector
from inferops.runtime.agent.redact import Redaction
from inferops.runtime.router.intake import MirrorIntake
from inferops.runtime.router.metrics import RouterMetrics
from inferops.runtime.router.relay import Relay, build_relay_app
from inferops.storage import Storage, StorageError, parse_location

log = logging.getLogger(__name__)

RECEIVE_BUFFER = 4 * 1024 * 1024  # log lines waiting while the agent is busy (to rmem_max)
# Only the local nginx and the agent itself use the sockets, in a directory only the pod's
# containers see; nginx's workers may run as another user than the agent.
SOCKET_MODE = 0o666
_STUB_COUNTS = re.compile(r"Reading: (\d+) Writing: (\d+)")


class _LogReader:
    """Reads nginx's log datagrams in bursts: woken by the first datagram, it reads every
    one waiting, then sleeps PAUSE before it listens again, so that a busy router costs
    about 1/PAUSE wake-ups a second, not one per request (the receive buffer holds what
    arrives meanwhile: thousands of lines)."""

    BURST = 5000
    PAUSE = 0.01

    def __init__(self, sock: socket.socket, metrics: RouterMetrics) -> None:
        self.sock = sock
        self.metrics = metrics
        self.loop = asyncio.get_running_loop()
        self.closed = False

    def start(self) -> None:
        if not self.closed:
            self.loop.add_reader(self.sock.fileno(), self.drain)

    def stop(self) -> None:
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())

    def drain(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        recv, line = self.sock.recv, self.metrics.log_line
        for _ in range(self.BURST):
            try:
                data = recv(2048)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # never fatal: the next datagram may read fine
                log.warning("reading the access log socket: %s", exc)
                break
            line(data)
        self.loop.call_later(self.PAUSE, self.start)


def _fresh(path: Path) -> str:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return str(path)


async def in_flight(config: RouterAgentConfig) -> int | None:
    """Requests nginx is reading or answering, minus this scrape's own, from stub_status."""
    connector = aiohttp.UnixConnector(path=str(config.socket(STATUS_SOCKET)))
    try:
        async with (
            aiohttp.ClientSession(connector=connector, trust_env=False) as session,
            session.get(f"http://nginx{STATUS_PATH}", timeout=aiohttp.ClientTimeout(2)) as r,
        ):
            text = await r.text()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None
    found = _STUB_COUNTS.search(text)
    if found is None:
        return None
    reading, writing = int(found[1]), int(found[2])
    return max(0, reading + writing - 1)


def metrics_app(config: RouterAgentConfig, metrics: RouterMetrics) -> web.Application:
    async def scrape(_: web.Request) -> web.Response:
        flying = await in_flight(config)
        if flying is not None:
            metrics.in_flight.set(flying)
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get(METRICS_PATH, scrape)
    app.router.add_get(HEALTH_PATH, health)
    return app


def collectors(config: RouterAgentConfig, pod: str) -> dict[str, Collector]:
    """One writer per shadow under `<output>/<service>/shadow-<app>_<version>/`."""
    pairing = config.pairing
    if pairing is None or pairing.output is None:
        return {}
    output = parse_location(pairing.output)
    if output.scheme == "https":
        raise StorageError(f"{pairing.output}: cannot write to an https:// location")
    storage = Storage(pairing.endpoint, pairing.region, timeout=10.0)
    return {
        t.label: Collector(storage, output, config.service, f"shadow-{t.label}", pod)
        for t in config.shadows()
    }


def redaction(config: RouterAgentConfig) -> Redaction:
    pairing = config.pairing
    headers = pairing.redact_headers if pairing else ()
    query = pairing.redact_query_parameters if pairing else ()
    return Redaction(
        frozenset(name_list((*DEFAULT_REDACT_HEADERS, *headers))),
        frozenset(name_list((*DEFAULT_REDACT_QUERY_PARAMETERS, *query))),
    )


@contextlib.asynccontextmanager
async def running_agent(config: RouterAgentConfig, pod: str = UNKNOWN) -> AsyncIterator[Relay]:
    """The agent listening on its sockets and metrics port, until the block ends."""
    metrics = RouterMetrics(t.label for t in config.targets)
    relay = Relay(config, metrics, collectors(config, pod), redaction(config))
    Path(config.runtime_dir).mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.bind(("127.0.0.1", config.log_port))
    sock.setblocking(False)
    reader = _LogReader(sock, metrics)
    reader.start()
    await relay.start()
    relay_runner = web.AppRunner(build_relay_app(relay), access_log=None)
    metrics_runner = web.AppRunner(metrics_app(config, metrics), access_log=None)
    intake: asyncio.Server | None = None
    try:
        await relay_runner.setup()
        relay_path = config.socket(RELAY_SOCKET)
        await web.UnixSite(relay_runner, _fresh(relay_path)).start()
        os.chmod(relay_path, SOCKET_MODE)
        mirror_path = config.socket(MIRROR_SOCKET)
        intake = await asyncio.get_running_loop().create_unix_server(
            lambda: MirrorIntake(relay.take_copy, config.max_body_bytes), _fresh(mirror_path)
        )
        os.chmod(mirror_path, SOCKET_MODE)
        await metrics_runner.setup()
        await web.TCPSite(metrics_runner, config.metrics_host, config.metrics_port).start()
        yield relay
    finally:
        if intake is not None:
            intake.close()
        await metrics_runner.cleanup()
        await relay_runner.cleanup()
        await relay.close()
        reader.stop()
        sock.close()


async def serve(config: RouterAgentConfig, pod: str) -> None:
    disable_created_metrics()  # type: ignore[no-untyped-call]  # half the lines of a scrape, of no use to a rate()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_agent(config, pod):
        log.info(
            "router agent for %s: metrics on %s:%d, sockets in %s, %d shadow(s)%s",
            config.service,
            config.metrics_host,
            config.metrics_port,
            config.runtime_dir,
            len(config.shadows()),
            ", pairing answers" if config.pairing else "",
        )
        await stop.wait()


def cmd_router_agent(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    try:
        config = RouterAgentConfig.from_json(Path(args.config).read_text(encoding="utf-8"))
    except OSError as exc:
        print(f"inferops router-agent: {args.config}: {exc.strerror}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"inferops router-agent: {args.config}: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(config, os.environ.get(POD_ENV, UNKNOWN)))
    except (StorageError, OSError) as exc:
        print(f"inferops router-agent: {exc}", file=sys.stderr)
        return 2
    return 0
