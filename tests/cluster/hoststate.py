"""What a real node changes on the host, captured before it starts and restored after.

A kubelet, kube-proxy, containerd and the CNI bridge plugin change global state of the
machine: kernel tunables, netfilter tables, routes and links, mounts, cgroups and a few
folders under /var/lib and /run. ``HostState.capture()`` records all of it; ``restore()``
puts back what a node may change (sysctls, netfilter tables, folders it created) and
``diff()`` names whatever still differs, so ``cluster-down`` and a test can prove that the
host is as before.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Kernel tunables that the kubelet, kube-proxy or the CNI plugins are known to write.
SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/ipv4/conf/all/route_localnet",
    "net/ipv6/conf/all/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
    "net/netfilter/nf_conntrack_tcp_be_liberal",
    "net/netfilter/nf_conntrack_udp_timeout",
    "net/netfilter/nf_conntrack_udp_timeout_stream",
)

# Folders that a node creates outside its own work dir when they are missing.
HOST_PATHS = (
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/run/netns",
    "/var/run/netns",
    "/etc/cni/net.d",
    "/opt/cni",
    "/run/containerd",
)

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _run(*cmd: str) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return p.stdout if p.returncode == 0 else ""


def nft_tables() -> dict[str, str]:
    """Every netfilter table as ``"family name" -> its text`` (counters left out)."""
    text = _run("nft", "list", "ruleset")
    tables: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        m = re.match(r"^table (\S+) (\S+) \{$", line)
        if m:
            current, lines = f"{m.group(1)} {m.group(2)}", [line]
            continue
        if current is None:
            continue
        lines.append(re.sub(r"counter packets \d+ bytes \d+", "counter", line))
        if line == "}":
            tables[current] = "\n".join(lines) + "\n"
            current = None
    return tables


# Where a node mounts (kubelet and containerd roots, pod network namespaces, cgroups).
# Mounts elsewhere belong to other software on the machine (an image build, say).
NODE_MOUNT_PREFIXES = ("/run/", "/var/", "/sys/fs/cgroup", "/tmp/inferops-", str(Path.home()))


def _mounts() -> list[str]:
    points = []
    for line in (_read(Path("/proc/self/mountinfo")) or "").splitlines():
        parts = line.split()
        if len(parts) > 4 and parts[4].startswith(NODE_MOUNT_PREFIXES):
            points.append(parts[4])
    return sorted(set(points))


def _cgroups() -> list[str]:
    """The top-level cgroups of every controller (the node adds /kubepods and the like)."""
    found = []
    with contextlib.suppress(OSError):
        for ctrl in sorted(CGROUP_ROOT.iterdir()):
            if ctrl.is_dir() and not ctrl.is_symlink():
                with contextlib.suppress(OSError):
                    found += [f"{ctrl.name}/{c.name}" for c in ctrl.iterdir() if c.is_dir()]
    return sorted(found)


@dataclass
class HostState:
    sysctls: dict[str, str | None] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    paths: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def capture(cls) -> HostState:
        return cls(
            sysctls={k: _read(Path("/proc/sys") / k) for k in SYSCTLS},
            tables=nft_tables(),
            links=sorted(
                line.split()[0].split("@")[0] for line in _run("ip", "-br", "link").splitlines()
            ),
            routes=sorted(
                line.strip()
                for args in (("ip", "route", "show", "table", "all"), ("ip", "-6", "route"))
                for line in _run(*args).splitlines()
                if line.strip()
            ),
            mounts=_mounts(),
            cgroups=_cgroups(),
            paths={p: Path(p).exists() for p in HOST_PATHS},
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> HostState:
        return cls(**json.loads(path.read_text()))

    # ---- restore

    def restore_sysctls(self) -> list[str]:
        problems = []
        for key, value in self.sysctls.items():
            if value is None:
                continue
            path = Path("/proc/sys") / key
            if _read(path) != value:
                try:
                    path.write_text(value + "\n")
                except OSError as exc:
                    problems.append(f"sysctl {key}: {exc}")
        return problems

    def restore_tables(self) -> list[str]:
        """Delete the netfilter tables made since, and put back the ones that changed."""
        problems = []
        now = nft_tables()
        for name, text in now.items():
            if self.tables.get(name) == text:
                continue
            p = subprocess.run(
                ["nft", "delete", "table", *name.split()],
                capture_output=True,
                text=True,
                check=False,
            )
            if p.returncode != 0:
                problems.append(f"nft delete table {name}: {p.stderr.strip()}")
                continue
            if name in self.tables:
                p = subprocess.run(
                    ["nft", "-f", "-"],
                    input=self.tables[name],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if p.returncode != 0:
                    problems.append(f"nft restore table {name}: {p.stderr.strip()}")
        return problems

    def remove_created_paths(self) -> list[str]:
        problems = []
        for path, existed in self.paths.items():
            p = Path(path)
            if existed or not p.exists():
                continue
            try:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            except OSError as exc:
                problems.append(f"remove {path}: {exc}")
        return problems

    def remove_created_cgroups(self) -> list[str]:
        """rmdir (deepest first) every top-level cgroup that appeared; they must be empty."""
        problems = []
        before = set(self.cgroups)
        for entry in _cgroups():
            if entry in before:
                continue
            top = CGROUP_ROOT / entry
            dirs = sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
            for d in [*dirs, top]:
                try:
                    d.rmdir()
                except OSError as exc:
                    problems.append(f"cgroup {d}: {exc}")
                    break
        return problems

    def restore(self) -> list[str]:
        return [
            *self.restore_tables(),
            *self.restore_sysctls(),
            *self.remove_created_cgroups(),
            *self.remove_created_paths(),
        ]

    # ---- compare

    def diff(self, other: HostState) -> list[str]:
        """What differs in ``other`` (the state now) from this one (the state before)."""
        out = [
            f"sysctl {k}: {v!r} -> {other.sysctls.get(k)!r}"
            for k, v in self.sysctls.items()
            if other.sysctls.get(k) != v
        ]
        for name in sorted(set(self.tables) | set(other.tables)):
            if self.tables.get(name) != other.tables.get(name):
                out.append(f"netfilter table {name} differs")
        for what in ("links", "routes", "mounts", "cgroups"):
            before, after = set(getattr(self, what)), set(getattr(other, what))
            out += [f"{what}: added {x}" for x in sorted(after - before)]
            out += [f"{what}: removed {x}" for x in sorted(before - after)]
        out += [
            f"path {p}: {'exists' if e else 'missing'} -> "
            f"{'exists' if other.paths.get(p) else 'missing'}"
            for p, e in self.paths.items()
            if other.paths.get(p) != e
        ]
        return out
