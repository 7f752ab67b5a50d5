"""A real node beside kwok's fake ones: containerd, runc, the CNI bridge, kubelet, kube-proxy.

Pods placed on it run real containers. It needs Linux and root (it changes the host's
network, cgroups and mounts). What it changes is captured in ``HostState`` before it starts
and restored when it stops; ``stop()`` returns whatever it could not put back.

The network is closed by design: pods live on the bridge ``inferops0`` (``10.245.0.0/24``,
the node is ``10.245.0.1``); a netfilter table of our own drops every forwarded packet that
does not both enter and leave by the bridge, and anything with a pod, Service or kwok
address that would leave by another interface. There is no masquerading, the Service range
is routed onto the bridge and kwok's fake pod range is a blackhole. Pods resolve names with
a CoreDNS of our own that answers ``cluster.local`` and nothing else.

Pods land on this node only from namespaces that opt in (``NAMESPACE_ANNOTATIONS``): the
node is tainted, and the API server's PodNodeSelector and PodTolerationRestriction admission
plugins give such namespaces' pods the node's selector and the toleration.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hoststate import HostState

if TYPE_CHECKING:
    from controlplane import ControlPlane

NODE_NAME = "inferops-node-0"
BRIDGE = "inferops0"
NODE_IP = "10.245.0.1"
POD_CIDR = "10.245.0.0/24"
NODE_LABEL = "node.inferops.dev/real"
GUARD_TABLE = ("inet", "inferops_guard")
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
PAUSE_IMAGE = "ghcr.io/inferops/pause:0.1.0"
NO_REGISTRY = "http://127.0.0.1:9"  # the discard port: nothing listens there

#: Annotations that send every pod of a namespace to the real node (and only there).
NAMESPACE_ANNOTATIONS = {
    "scheduler.alpha.kubernetes.io/node-selector": f"{NODE_LABEL}=true",
    "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(
        [{"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}]
    ),
}

NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy", "coredns")


class NodeBusyError(RuntimeError):
    """Another real node runs on this machine; nothing of it may be touched."""


def containerd_root() -> Path:
    """Kept between runs, so imported images are reused (``INFEROPS_CONTAINERD_ROOT``)."""
    env = os.environ.get("INFEROPS_CONTAINERD_ROOT")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "inferops" / "containerd"


def cni_bin_dir() -> str | None:
    for d in CNI_BIN_DIRS:
        if os.access(Path(d) / "bridge", os.X_OK) and os.access(Path(d) / "host-local", os.X_OK):
            return d
    return None


REPO = Path(__file__).resolve().parents[2]


def _images_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("inferops_images", REPO / "images" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["inferops_images"] = module
    spec.loader.exec_module(module)
    return module


def _file_stamp(path: Path) -> str:
    st = Path(path).stat()
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def node_images() -> Callable[[str], None]:
    """Builds (or reuses) the images of images/build.py and loads into containerd those
    that it does not hold yet, keyed by the archive each came from (path, size, time)."""

    def load(socket: str) -> None:
        images = _images_module()
        archives: dict[str, Path] = images.build_images()
        marker = containerd_root() / "inferops-imported.json"
        try:
            done = json.loads(marker.read_text())
        except (OSError, ValueError):
            done = {}
        listed = set(sh("ctr", "--address", socket, "-n", "k8s.io", "images", "ls", "-q").split())
        # an image rebuilt in place keeps its archive's path: compare the file itself
        stamp = {n: _file_stamp(a) for n, a in archives.items()}
        todo = {n: a for n, a in archives.items() if done.get(n) != stamp[n] or n not in listed}
        if todo:
            images.import_images(todo, socket)
            done.update({n: stamp[n] for n in todo})
            marker.write_text(json.dumps(done, indent=1) + "\n")

    return load


def unavailable_reason(bin_dir: Path) -> str | None:
    """Why a real node cannot run on this machine, or None when it can."""
    if os.name != "posix" or not Path("/proc/sys").is_dir():
        return "a real node needs Linux"
    if os.geteuid() != 0:
        return "a real node needs root (it changes the host's network, cgroups and mounts)"
    missing = [t for t in ("containerd", "runc", "ctr", "nft", "iptables", "ip") if not _which(t)]
    if cni_bin_dir() is None:
        missing.append("CNI plugins (containernetworking-plugins)")
    if missing:
        return (
            "missing " + ", ".join(missing) + " (apt-get install containerd runc "
            "containernetworking-plugins nftables iptables iproute2)"
        )
    for b in ("kubelet", "kube-proxy", "coredns"):
        if not os.access(bin_dir / b, os.X_OK):
            return f"{bin_dir / b} missing: run tests/cluster/build.sh"
    return None


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def sh(*cmd: str, check: bool = True, input: str | None = None, timeout: float = 60) -> str:
    p = subprocess.run(
        cmd, capture_output=True, text=True, input=input, timeout=timeout, check=False
    )
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def guard_rules(service_cidr: str, kwok_cidr: str) -> str:
    family, table = GUARD_TABLE
    ranges = f"{{ {POD_CIDR}, {service_cidr}, {kwok_cidr} }}"
    return f"""table {family} {table} {{
    chain forward {{
        type filter hook forward priority -200; policy accept;
        iifname "{BRIDGE}" oifname != "{BRIDGE}" drop
        iifname != "{BRIDGE}" oifname "{BRIDGE}" drop
    }}
    chain postrouting {{
        type filter hook postrouting priority -200; policy accept;
        oifname != {{ "{BRIDGE}", "lo" }} ip daddr {ranges} drop
        oifname != {{ "{BRIDGE}", "lo" }} ip saddr {ranges} drop
    }}
}}
"""


def _mounts_under(roots: list[str]) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if any(point == r or point.startswith(r + "/") for r in roots):
            points.append(point)
    return sorted(set(points), key=len, reverse=True)


def _unmount_under(prefixes: Iterable[Path]) -> list[str]:
    """Unmount everything at or below the prefixes, deepest first; returns what stays."""
    roots = [str(p) for p in prefixes]
    for _ in range(3):  # a mount can hide another one at the same point
        points = _mounts_under(roots)
        if not points:
            return []
        for point in points:
            p = subprocess.run(["umount", point], capture_output=True, check=False)
            if p.returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    return [f"still mounted: {point}" for point in _mounts_under(roots)]


class RealNode:
    """The node's lifecycle; its processes are spawned through the ControlPlane."""

    def __init__(self, cp: ControlPlane, import_images: Callable[[str], None] | None = None):
        self.cp = cp
        self.dir = cp.workdir / "node"
        self.import_images = import_images
        self.containerd_root = containerd_root()
        # unix socket paths are limited to 108 bytes: keep the state dir short
        digest = hashlib.sha256(str(cp.workdir).encode()).hexdigest()[:10]
        self.state_dir = Path("/run") / f"inferops-{digest}"
        self.socket = self.state_dir / "containerd.sock"
        self.before_file = self.dir / "host-before.json"
        self.ports: dict[str, int] = {}

    # ---- network (before the API server starts: it listens on the node's address)

    def network_up(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if Path(f"/sys/class/net/{BRIDGE}").exists():
            raise NodeBusyError(
                f"bridge {BRIDGE} exists: another real node runs here, or one was not torn "
                "down (make cluster-down)"
            )
        if not self.before_file.exists():
            HostState.capture().save(self.before_file)
        from controlplane import KWOK_POD_CIDR, SERVICE_CIDR

        # the guards first: nothing may be forwarded before they hold
        sh("nft", "-f", "-", input=guard_rules(SERVICE_CIDR, KWOK_POD_CIDR))
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        sh("ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP)
        sh("ip", "route", "add", "blackhole", KWOK_POD_CIDR)
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")

    # ---- processes (after the API server is ready)

    def start(self, deadline: float) -> None:
        from controlplane import free_port, write_kubeconfig

        cp = self.cp
        pki = cp.pki
        assert pki is not None
        for d in ("cni/net.d", "cni/ipam", "kubelet", "config"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.containerd_root.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "config"

        def kubeconfig(name: str, cn: str, orgs: tuple[str, ...] = ()) -> Path:
            crt, key = pki.issue(name, cn, orgs)
            return write_kubeconfig(
                cfg / f"{name}.kubeconfig",
                server=cp.server,
                ca=pki.ca_crt,
                crt=crt,
                key=key,
                user=cn,
            )

        kubelet_kc = kubeconfig("kubelet", f"system:node:{NODE_NAME}", ("system:nodes",))
        proxy_kc = kubeconfig("kube-proxy", "system:kube-proxy")
        serving_crt, serving_key = pki.issue(
            "kubelet-serving", NODE_NAME, server=True, sans=(NODE_IP, NODE_NAME)
        )
        self.ports = {
            "kubelet": 10250,
            "kubelet-healthz": free_port(),
            "proxy-healthz": free_port(),
            "proxy-metrics": free_port(),
            "coredns-health": free_port(),
        }

        # -- containerd
        cni_conf = self.dir / "cni/net.d/10-inferops.conflist"
        cni_conf.write_text(json.dumps(self._cni_config(), indent=2) + "\n")
        (cfg / "containerd.toml").write_text(self._containerd_config())
        cp.spawn_extra(
            "containerd",
            shutil.which("containerd") or "containerd",
            ["--config", str(cfg / "containerd.toml")],
            # Every image comes from images/build.py. A pod naming any other image must fail
            # here, not make containerd (on the host's network) call a registry: its HTTP
            # goes to a closed loopback port, so nothing is resolved or sent beyond the host.
            env=dict.fromkeys(
                ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"), NO_REGISTRY
            )
            | {"NO_PROXY": "", "no_proxy": ""},
        )
        cp.wait(self._ctr_ok, deadline, "containerd")
        self._remove_stale_containers()
        if self.import_images is not None:
            self.import_images(str(self.socket))

        # -- kubelet
        resolv = cfg / "resolv.conf"
        resolv.write_text(f"nameserver {NODE_IP}\nsearch cluster.local\n")
        (cfg / "kubelet.json").write_text(
            json.dumps(self._kubelet_config(resolv, serving_crt, serving_key), indent=2) + "\n"
        )
        cp.spawn_extra(
            "kubelet",
            str(cp.binary("kubelet")),
            [
                f"--config={cfg / 'kubelet.json'}",
                f"--kubeconfig={kubelet_kc}",
                f"--root-dir={self.dir / 'kubelet'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                f"--node-labels={NODE_LABEL}=true",
                f"--v={cp.verbosity}",
            ],
        )

        # -- kube-proxy
        (cfg / "kube-proxy.json").write_text(json.dumps(self._proxy_config(proxy_kc), indent=2))
        cp.spawn_extra(
            "kube-proxy",
            str(cp.binary("kube-proxy")),
            [f"--config={cfg / 'kube-proxy.json'}", f"--v={cp.verbosity}"],
        )

        # -- cluster DNS
        from coredns import corefile

        (cfg / "Corefile").write_text(
            corefile(
                listen=NODE_IP,
                port=53,
                health_port=self.ports["coredns-health"],
                kubeconfig=str(cp.kubeconfig),
            )
        )
        cp.spawn_extra("coredns", str(cp.binary("coredns")), ["-conf", str(cfg / "Corefile")])

        cp.wait(self._node_ready, deadline, f"node {NODE_NAME} Ready and untainted")

    def _ctr_ok(self) -> bool:
        p = subprocess.run(
            ["ctr", "--address", str(self.socket), "version"],
            capture_output=True,
            check=False,
            timeout=10,
        )
        return p.returncode == 0

    def ctr(self, *args: str, check: bool = True) -> str:
        return sh("ctr", "--address", str(self.socket), "-n", "k8s.io", *args, check=check)

    def _remove_stale_containers(self) -> None:
        """Containers a crashed earlier run left in the kept containerd root."""
        for task in self.ctr("tasks", "ls", "-q", check=False).split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
            self.ctr("tasks", "delete", "-f", task, check=False)
        for c in self.ctr("containers", "ls", "-q", check=False).split():
            self.ctr("containers", "delete", c, check=False)

    def _cni_config(self) -> dict[str, Any]:
        return {
            "cniVersion": "0.4.0",
            "name": "inferops",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,  # pods never reach anything the node does not route for them
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.dir / "cni/ipam"),
                    },
                }
            ],
        }

    def _containerd_config(self) -> str:
        cri = '[plugins."io.containerd.grpc.v1.cri"]'
        return f"""version = 2
root = "{self.containerd_root}"
state = "{self.state_dir}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.containerd_root}/opt"
{cri}
  sandbox_image = "{PAUSE_IMAGE}"
  # lowering a process's oom_score_adj needs CAP_SYS_RESOURCE, which this host withholds
  restrict_oom_score_adj = true
  enable_cdi = false
{cri[:-1]}.containerd]
  snapshotter = "overlayfs"
{cri[:-1]}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
{cri[:-1]}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{self.state_dir}/runc"
{cri[:-1]}.cni]
  bin_dir = "{cni_bin_dir()}"
  conf_dir = "{self.dir / "cni/net.d"}"
  max_conf_num = 1
{cri[:-1]}.registry]
  config_path = ""
"""

    def _kubelet_config(self, resolv: Path, crt: Path, key: Path) -> dict[str, Any]:
        pki = self.cp.pki
        assert pki is not None
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": self.ports["kubelet"],
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.ports["kubelet-healthz"],
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(pki.ca_crt)},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "tlsCertFile": str(crt),
            "tlsPrivateKeyFile": str(key),
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,  # these machines mount cgroup v1 controllers
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "clusterDNS": [NODE_IP],
            "clusterDomain": "cluster.local",
            "resolvConf": str(resolv),
            "evictionHard": {},  # a shared test machine: never evict for its disk or memory
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "registerWithTaints": [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}],
            "serializeImagePulls": False,
            "maxPods": 110,
            "protectKernelDefaults": False,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "nodeStatusUpdateFrequency": "5s",
            "shutdownGracePeriod": "0s",
            "containerLogMaxSize": "10Mi",
        }

    def _proxy_config(self, kubeconfig: Path) -> dict[str, Any]:
        return {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables",
            "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_IP,
            "healthzBindAddress": f"127.0.0.1:{self.ports['proxy-healthz']}",
            "metricsBindAddress": f"127.0.0.1:{self.ports['proxy-metrics']}",
            "clusterCIDR": POD_CIDR,
            "detectLocalMode": "ClusterCIDR",
            "nodePortAddresses": [f"{NODE_IP}/32"],
            "oomScoreAdj": 0,
            # zeros leave the host's conntrack settings as they are
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
                "udpTimeout": "0s",
                "udpStreamTimeout": "0s",
            },
            "iptables": {
                "masqueradeAll": False,
                "localhostNodePorts": False,
                "minSyncPeriod": "0s",
                "syncPeriod": "30s",
            },
        }

    def _node_ready(self) -> bool:
        status, body = self.cp.request("GET", f"/api/v1/nodes/{NODE_NAME}", timeout=3)
        if status != 200:
            return False
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in body.get("status", {}).get("conditions", [])
        )
        taints = [t.get("key", "") for t in body.get("spec", {}).get("taints") or []]
        return ready and not any(t.startswith("node.kubernetes.io/") for t in taints)

    # ---- stop

    def _pods_on_node(self) -> list[tuple[str, str]]:
        status, body = self.cp.request(
            "GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE_NAME}", timeout=10
        )
        if status != 200:
            return []
        return [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in body["items"]]

    def drain(self, timeout: float = 60.0) -> None:
        """Cordon, delete every pod on the node, and wait for its containers to stop."""
        cp = self.cp
        with contextlib.suppress(OSError):
            cp.request(
                "PATCH",
                f"/api/v1/nodes/{NODE_NAME}",
                {"spec": {"unschedulable": True}},
                content_type="application/strategic-merge-patch+json",
            )
            for ns, name in self._pods_on_node():
                cp.request(
                    "DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", {"gracePeriodSeconds": 1}
                )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.ctr("tasks", "ls", "-q", check=False).split():
                return
            time.sleep(0.5)

    def stop(self) -> list[str]:
        """Stop the node and put the host back as it was; returns what is still different."""
        cp = self.cp
        problems: list[str] = []
        running = cp.pid_of("containerd") is not None
        if running and cp.pid_of("kubelet") is not None:
            self.drain()
        for name in ("coredns", "kube-proxy", "kubelet"):
            cp.stop_component(name)
        if cp.has("kube-proxy"):
            sh(str(cp.binary("kube-proxy")), "--cleanup", check=False)
        if running:
            self._remove_stale_containers()
        cp.stop_component("containerd")
        before = HostState.load(self.before_file) if self.before_file.exists() else None
        netns_dir = Path("/run/netns")
        netns = list(netns_dir.glob("cni-*")) if netns_dir.is_dir() else []
        # containerd makes /run/netns a shared bind mount of itself; a pod's namespace mounted
        # before that hides under it, so the folder's own mount goes too when it is ours
        ours = [netns_dir] if before is not None and str(netns_dir) not in before.mounts else []
        problems += _unmount_under([self.dir, self.containerd_root, self.state_dir, *netns, *ours])
        for ns in netns:
            with contextlib.suppress(OSError):
                ns.unlink()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        if Path(f"/sys/class/net/{BRIDGE}").exists():
            sh("ip", "link", "del", BRIDGE, check=False)
        from controlplane import KWOK_POD_CIDR, SERVICE_CIDR

        sh("ip", "route", "del", SERVICE_CIDR, "dev", BRIDGE, check=False)
        sh("ip", "route", "del", "blackhole", KWOK_POD_CIDR, check=False)
        if before is not None:
            problems += before.restore()
            problems += before.diff(HostState.capture())
            if not problems:
                self.before_file.unlink()
        return problems
