#!/usr/bin/env python3
"""The cluster DNS of the test cluster's real node: CoreDNS, answering only locally.

``tests/cluster/build.sh coredns`` builds CoreDNS from its published module with a handful
of plugins (``build/coredns/main.go``). No forwarding plugin is compiled in, and the
Corefile written here answers ``cluster.local`` (and the reverse zones) from the API server
through the *kubernetes* plugin, and every other name with NXDOMAIN (*template*): nothing
is ever sent to the machine's resolver or to any upstream.

Python API::

    dns = CoreDNS("/tmp/dns", listen="10.0.0.10", port=53, kubeconfig=cp.kubeconfig)
    dns.start()      # returns once /health and /ready (API caches synced) answer OK
    query("kubernetes.default.svc.cluster.local", server="10.0.0.10").addresses()
    dns.stop()

CLI::

    python tests/cluster/coredns.py up --dir DIR --kubeconfig KUBECONFIG [--listen IP] [--port N]
    python tests/cluster/coredns.py down --dir DIR
    python tests/cluster/coredns.py query NAME [TYPE] [--server IP] [--port N]

Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUILD_SH = HERE / "build.sh"

ZONE = "cluster.local"
REVERSE_ZONES = ("in-addr.arpa", "ip6.arpa")

StrPath = str | os.PathLike[str]


def default_binary() -> Path:
    """``coredns`` in the bin dir of build.sh (``INFEROPS_K8S_BIN_DIR`` overrides)."""
    env = os.environ.get("INFEROPS_K8S_BIN_DIR")
    if env:
        return Path(env).expanduser() / "coredns"
    out = subprocess.run(
        ["bash", str(BUILD_SH), "--print-bin-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip()) / "coredns"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def corefile(
    *,
    listen: str,
    port: int = 53,
    health_port: int,
    ready_port: int | None = None,
    kubeconfig: StrPath | None = None,
    context: str | None = None,
    endpoint: str | None = None,
    tls: tuple[StrPath, StrPath, StrPath] | None = None,
    zone: str = ZONE,
    ttl: int = 5,
    log_queries: bool = True,
) -> str:
    """The Corefile text: `zone` + reverse zones from the API, NXDOMAIN for everything else.

    The API is reached with `kubeconfig` (and `context`, default: its current one) or with
    `endpoint` (URL) and `tls` = (client cert, client key, CA cert). DNS listens on
    `listen`:`port` (UDP and TCP) only; /health and /ready on 127.0.0.1 only.
    """
    if kubeconfig is not None:
        api = [f"kubeconfig {kubeconfig}" + (f" {context}" if context else "")]
    elif endpoint:
        api = [f"endpoint {endpoint}"] + ([f"tls {' '.join(map(str, tls))}"] if tls else [])
    else:
        raise ValueError("corefile() needs kubeconfig or endpoint")
    log = ["    log"] if log_queries else []
    zones = (zone, *REVERSE_ZONES)
    lines = [
        "# Written by tests/cluster/coredns.py. Only local answers: there is no forward plugin.",
        f"# {zone} and the reverse zones come from the API (kubernetes plugin); no fallthrough,",
        "# so a name it does not know is NXDOMAIN. Every other zone: NXDOMAIN (template).",
        " ".join(f"{z}:{port}" for z in zones) + " {",
        f"    bind {listen}",
        "    errors",
        *log,
        f"    health 127.0.0.1:{health_port}",
        *([f"    ready 127.0.0.1:{ready_port}"] if ready_port else []),
        f"    kubernetes {' '.join(zones)} {{",
        *(f"        {a}" for a in api),
        "        pods insecure",
        f"        ttl {ttl}",
        "    }",
        f"    cache {max(ttl, 1)}",
        "}",
        f".:{port} {{",
        f"    bind {listen}",
        "    errors",
        *log,
        "    template ANY ANY {",
        "        rcode NXDOMAIN",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def write_corefile(path: StrPath, **kwargs: Any) -> Path:
    """Write `corefile(**kwargs)` to `path` and return it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(corefile(**kwargs))
    return p


class CoreDNSError(RuntimeError):
    pass


def _http_ok(port: int, path: str) -> bool:
    """GET http://127.0.0.1:`port``path` is 200 (http.client: no proxy from the environment)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _runs_coredns(pid: int) -> bool:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return Path(argv0.decode(errors="replace")).name == "coredns" and state != "Z"


def stop(workdir: StrPath, timeout: float = 10.0) -> bool:
    """Stop the CoreDNS named by ``workdir/coredns.pid`` (only if that pid runs coredns).

    Returns whether one was running.
    """
    pid_file = Path(workdir) / "coredns.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    was_running = _runs_coredns(pid)
    if was_running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _runs_coredns(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _runs_coredns(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return was_running


class CoreDNS:
    """A CoreDNS process with a Corefile from `corefile()`, its files in `workdir`.

    ``workdir/Corefile``, ``workdir/coredns.log`` (stdout+stderr, appended),
    ``workdir/coredns.pid``. `corefile_text` replaces the generated Corefile (then
    `health_port` must match its ``health`` line and `ready_port` its ``ready`` line or be 0).
    """

    def __init__(
        self,
        workdir: StrPath,
        *,
        listen: str = "127.0.0.1",
        port: int = 53,
        kubeconfig: StrPath | None = None,
        context: str | None = None,
        health_port: int | None = None,
        ready_port: int | None = None,
        binary: StrPath | None = None,
        log_queries: bool = True,
        corefile_text: str | None = None,
    ):
        self.workdir = Path(workdir).resolve()
        self.listen, self.port = listen, port
        self.health_port = health_port or free_port()
        self.ready_port = free_port() if ready_port is None else ready_port
        self.binary = Path(binary) if binary else default_binary()
        self.corefile = self.workdir / "Corefile"
        self.log_file = self.workdir / "coredns.log"
        self.pid_file = self.workdir / "coredns.pid"
        self._text = corefile_text or corefile(
            listen=listen,
            port=port,
            health_port=self.health_port,
            ready_port=self.ready_port,
            kubeconfig=kubeconfig,
            context=context,
            log_queries=log_queries,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> CoreDNS:
        """Start CoreDNS; return once /health (and /ready, if configured) answer 200.

        /ready waits for the kubernetes plugin's first sync with the API server.
        """
        if not self.binary.is_file():
            raise CoreDNSError(f"{self.binary} missing: run tests/cluster/build.sh coredns")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.corefile.write_text(self._text)
        with open(self.log_file, "ab") as log:
            log.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} {self.binary}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(self.binary), "-conf", str(self.corefile)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self.proc.pid}\n")
        checks = [(self.health_port, "/health")]
        if self.ready_port:
            checks.append((self.ready_port, "/ready"))
        deadline = time.monotonic() + timeout
        while not all(_http_ok(port, path) for port, path in checks):
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise CoreDNSError(f"coredns exited with {code}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise CoreDNSError(f"coredns not healthy/ready in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.2)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (then SIGKILL) the process we started, else the one in the pid file."""
        if self.proc is None:
            stop(self.workdir, timeout)
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.pid_file.unlink(missing_ok=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the log, without /ready's "Plugins not ready" (one per poll)."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        kept = [ln for ln in text.splitlines() if "Plugins not ready" not in ln]
        return "\n".join(kept[-lines:])

    def __enter__(self) -> CoreDNS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- a DNS client

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "TXT": 16, "AAAA": 28, "SRV": 33}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


@dataclass(frozen=True)
class Record:
    name: str
    type: str
    ttl: int
    data: str


@dataclass(frozen=True)
class Reply:
    rcode: str
    authoritative: bool
    answers: list[Record]

    def addresses(self) -> list[str]:
        return [r.data for r in self.answers if r.type in ("A", "AAAA")]


def _name(msg: bytes, off: int) -> tuple[str, int]:
    """A (possibly compressed) domain name at `off`; returns it and the offset after it."""
    labels: list[str] = []
    end = -1
    for _ in range(128):  # bounds pointer loops
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if end < 0:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
        elif n == 0:
            return ".".join(labels) + ".", (end if end >= 0 else off + 1)
        else:
            labels.append(msg[off + 1 : off + 1 + n].decode("ascii", "replace"))
            off += 1 + n
    raise ValueError("DNS name pointer loop")


def _rdata(msg: bytes, off: int, rtype: str, rdlen: int) -> str:
    raw = msg[off : off + rdlen]
    if rtype in ("A", "AAAA"):
        return str(ipaddress.ip_address(raw))
    if rtype in ("CNAME", "PTR", "NS"):
        return _name(msg, off)[0]
    if rtype == "SRV":
        prio, weight, port = struct.unpack("!HHH", raw[:6])
        return f"{prio} {weight} {port} {_name(msg, off + 6)[0]}"
    if rtype == "SOA":
        mname, o = _name(msg, off)
        rname, o = _name(msg, o)
        return f"{mname} {rname} " + " ".join(map(str, struct.unpack("!5I", msg[o : o + 20])))
    if rtype == "TXT":
        out, i = [], 0
        while i < len(raw):
            out.append(raw[i + 1 : i + 1 + raw[i]].decode(errors="replace"))
            i += 1 + raw[i]
        return " ".join(out)
    return raw.hex()


def query(
    name: str,
    qtype: str = "A",
    *,
    server: str = "127.0.0.1",
    port: int = 53,
    timeout: float = 2.0,
    tcp: bool = False,
) -> Reply:
    """One recursive-flag DNS query to `server`:`port` (UDP; TCP if asked or truncated).

    For PTR, `name` may be an IP address. Meant for the test cluster's own DNS server.
    """
    qtype = qtype.upper()
    if qtype == "PTR":
        with contextlib.suppress(ValueError):
            name = ipaddress.ip_address(name).reverse_pointer
    qid = int.from_bytes(os.urandom(2), "big")
    qname = b"".join(bytes([len(x)]) + x.encode() for x in name.rstrip(".").split(".") if x)
    msg = struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + qname + b"\0"
    msg += struct.pack("!2H", QTYPES[qtype], 1)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    if tcp:
        with socket.create_connection((server, port), timeout=timeout) as s:
            s.sendall(struct.pack("!H", len(msg)) + msg)
            buf = b""
            while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
                chunk = s.recv(65535)
                if not chunk:
                    raise ConnectionError("DNS server closed the TCP connection")
                buf += chunk
            resp = buf[2:]
    else:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(msg, (server, port))
            while True:
                resp = s.recv(65535)
                if resp[:2] == msg[:2]:
                    break
    rid, flags, _qd, an = struct.unpack("!4H", resp[:8])
    if rid != qid:
        raise ValueError("DNS reply id mismatch")
    if flags & 0x0200 and not tcp:  # truncated
        return query(name, qtype, server=server, port=port, timeout=timeout, tcp=True)
    off = _name(resp, 12)[1] + 4
    answers = []
    for _ in range(an):
        rname, off = _name(resp, off)
        t, _cls, ttl, rdlen = struct.unpack("!HHIH", resp[off : off + 10])
        off += 10
        tname = next((k for k, v in QTYPES.items() if v == t), str(t))
        answers.append(Record(rname, tname, ttl, _rdata(resp, off, tname, rdlen)))
        off += rdlen
    return Reply(RCODES.get(flags & 0xF, str(flags & 0xF)), bool(flags & 0x0400), answers)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start CoreDNS in the background (pid file in DIR)")
    up.add_argument("--dir", required=True)
    up.add_argument("--kubeconfig", required=True)
    up.add_argument("--context")
    up.add_argument("--listen", default="127.0.0.1")
    up.add_argument("--port", type=int, default=53)
    up.add_argument("--health-port", type=int)
    down = sub.add_parser("down", help="stop the CoreDNS of DIR")
    down.add_argument("--dir", required=True)
    q = sub.add_parser("query", help="query a name (print rcode and answers)")
    q.add_argument("name")
    q.add_argument("type", nargs="?", default="A")
    q.add_argument("--server", default="127.0.0.1")
    q.add_argument("--port", type=int, default=53)
    q.add_argument("--tcp", action="store_true")
    args = ap.parse_args(argv)

    if args.cmd == "up":
        dns = CoreDNS(
            args.dir,
            listen=args.listen,
            port=args.port,
            kubeconfig=Path(args.kubeconfig).resolve(),
            context=args.context,
            health_port=args.health_port,
        )
        dns.start()
        print(f"coredns pid {dns.proc.pid if dns.proc else '?'} on {args.listen}:{args.port}")
        print(f"health http://127.0.0.1:{dns.health_port}/health, log {dns.log_file}")
        return 0
    if args.cmd == "down":
        print("stopped" if stop(args.dir) else "not running")
        return 0
    r = query(args.name, args.type, server=args.server, port=args.port, tcp=args.tcp)
    print(f"{r.rcode}{' aa' if r.authoritative else ''}")
    for rec in r.answers:
        print(f"{rec.name}\t{rec.ttl}\t{rec.type}\t{rec.data}")
    return 0 if r.rcode == "NOERROR" else 1


if __name__ == "__main__":
    sys.exit(main())
