#!/usr/bin/env python3
"""A real Kubernetes control plane on loopback, for the tests.

etcd, kube-apiserver, kube-controller-manager and (when built) kube-scheduler and kwok
run as local processes, built by ``tests/cluster/build.sh`` from their published Go
modules. Nothing listens on anything but 127.0.0.1 and nothing is contacted off the
machine. kwok simulates the nodes: it marks them Ready, makes scheduled pods Running and
Ready, and completes the pods of Jobs. Pod and node IPs that kwok writes into statuses
are fake data: nothing listens there, so never connect to them.

Python API::

    cp = ControlPlane("/tmp/cp")
    cp.start()              # returns once /readyz is ok and the default SA exists
    cp.kubeconfig           # admin kubeconfig (group system:masters)
    cp.stop()

CLI::

    python tests/cluster/controlplane.py up   [--dir DIR] [--no-kwok] [--no-scheduler]
    python tests/cluster/controlplane.py down [--dir DIR]
    python tests/cluster/controlplane.py status [--dir DIR]

DIR defaults to ``$INFEROPS_CLUSTER_DIR`` or ``~/.cache/inferops/cluster``; ``up`` writes
the admin kubeconfig to ``DIR/kubeconfig`` and prints its path; logs go to ``DIR/logs``.
Only the standard library and ``cryptography`` are needed.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import datetime
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script: realnode and hoststate sit beside it
    sys.path.insert(0, str(HERE))

from realnode import (  # noqa: E402
    NODE_IP,
    NODE_NAME,
    NodeBusyError,
    RealNode,
    node_images,
    unavailable_reason,
)

BUILD_SH = HERE / "build.sh"

#: The fake nodes kwok manages: name -> (labels, allocatable/capacity).
POOL_LABEL = "serving.inferops.dev/pool"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
DEFAULT_NODES: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "kwok-pool-a-0": (
        {POOL_LABEL: "pool-a"},
        {
            "cpu": "64",
            "memory": "512Gi",
            "pods": "110",
            "nvidia.com/gpu": "8",
            "ephemeral-storage": "1Ti",
        },
    ),
    "kwok-pool-b-0": (
        {POOL_LABEL: "pool-b"},
        {
            "cpu": "64",
            "memory": "512Gi",
            "pods": "110",
            "nvidia.com/gpu": "8",
            "ephemeral-storage": "1Ti",
        },
    ),
    "kwok-public-0": (
        {},
        {"cpu": "64", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"},
    ),
}


def kwok_nodes(
    pods_per_node: int = 110, public_nodes: int = 1
) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """DEFAULT_NODES sized for `pods_per_node` pods each (beyond 110, 4 CPUs and 8 GiB per
    pod: the largest flavor a benchmark's pods ask for, so the scheduler never runs out of
    CPU or memory before pods), with `public_nodes` nodes in the public pool: what a scale
    benchmark with thousands of pods asks for. kwok_nodes() is DEFAULT_NODES."""
    if pods_per_node < 1 or public_nodes < 1:
        raise ValueError("pods_per_node and public_nodes must be >= 1")
    nodes = {}
    for name, (labels, capacity) in DEFAULT_NODES.items():
        cpu, memory = int(capacity["cpu"]), int(capacity["memory"].removesuffix("Gi"))
        sized = {
            **capacity,
            "pods": str(pods_per_node),
            "cpu": str(max(cpu, 4 * pods_per_node) if pods_per_node > 110 else cpu),
            "memory": f"{max(memory, 8 * pods_per_node) if pods_per_node > 110 else memory}Gi",
        }
        if labels:
            nodes[name] = (labels, sized)
        else:
            nodes.update({f"kwok-public-{i}": (labels, sized) for i in range(public_nodes)})
    return nodes


# Fake pod addresses kwok hands out (data only: nothing is ever reachable there).
KWOK_POD_CIDR = "10.244.0.0/16"
# ClusterIPs. A /16 holds 65,534 Services (a RealTimeService makes three): a /24 could not
# host 100 services. $INFEROPS_SERVICE_CIDR picks another IPv4 range (10.0.0.1 stays the
# `kubernetes` Service and 10.0.0.10 CoreDNS, so it must contain 10.0.0.0/24).
SERVICE_CIDR = os.environ.get("INFEROPS_SERVICE_CIDR", "").strip() or "10.0.0.0/16"
_SERVICES = ipaddress.ip_network(SERVICE_CIDR)
if not isinstance(_SERVICES, ipaddress.IPv4Network) or not ipaddress.ip_network(
    "10.0.0.0/24"
).subnet_of(_SERVICES):
    raise SystemExit(f"INFEROPS_SERVICE_CIDR={SERVICE_CIDR}: must contain 10.0.0.0/24")

# Start order; stop goes the other way (the real node's own components stop first).
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy", "coredns")


def default_cluster_dir() -> Path:
    env = os.environ.get("INFEROPS_CLUSTER_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "inferops" / "cluster"


def _pinned_k8s_version() -> str:
    text = (HERE / "build" / "kubernetes" / "go.mod").read_text()
    m = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes (v\S+)", text, re.M)
    if not m:
        raise RuntimeError("k8s.io/kubernetes version not found in build/kubernetes/go.mod")
    return m.group(1)


def default_bin_dir() -> Path:
    """Where build.sh puts the binaries (``INFEROPS_K8S_BIN_DIR`` overrides)."""
    env = os.environ.get("INFEROPS_K8S_BIN_DIR")
    if env:
        return Path(env).expanduser()
    root = os.environ.get("INFEROPS_K8S_CACHE") or str(Path.home() / ".cache" / "inferops" / "k8s")
    return Path(root).expanduser() / _pinned_k8s_version() / "bin"


def build(components: list[str] | None = None, quiet: bool = False) -> Path:
    """Run build.sh (a no-op when the binaries exist) and return the bin dir."""
    cmd = ["bash", str(BUILD_SH), *(components or [])]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else None)
    return default_bin_dir()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- PKI


class _PKI:
    """CA, serving cert, client certs and the service-account key pair, as PEM files."""

    def __init__(self, d: Path, ca_name: str = "inferops-test-ca", service_accounts: bool = True):
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        self._not_before = now - datetime.timedelta(hours=1)
        self._not_after = now + datetime.timedelta(days=365)

        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_crt = self._write("ca.crt", self.ca_cert.public_bytes(serialization.Encoding.PEM))
        self.ca_key_file = self._write("ca.key", self._key_pem(self.ca_key))
        if not service_accounts:
            return

        # service accounts: RSA, the most widely supported signing key type
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.sa_key = self._write("sa.key", self._key_pem(sa))
        self.sa_pub = self._write(
            "sa.pub",
            sa.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def _write(self, name: str, data: bytes) -> Path:
        p = self.dir / name
        p.write_bytes(data)
        p.chmod(0o600)
        return p

    def _key_pem(self, key: Any) -> bytes:
        s = serialization
        return key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption())

    def issue(
        self,
        name: str,
        cn: str,
        orgs: tuple[str, ...] = (),
        server: bool = False,
        sans: tuple[str, ...] | None = None,
    ) -> tuple[Path, Path]:
        """A key and certificate signed by the CA; ``sans`` (IPs or DNS names) for servers,
        by default the API server's names."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
        )
        if server:
            names = APISERVER_SANS if sans is None else sans
            b = b.add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        cert = b.sign(self.ca_key, hashes.SHA256())
        crt = self._write(f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
        keyf = self._write(f"{name}.key", self._key_pem(key))
        return crt, keyf


# the in-cluster names too, so a real-cluster-like client config also verifies
APISERVER_SANS = (
    "127.0.0.1",
    "localhost",
    "10.0.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


def _general_names(names: tuple[str, ...]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def _b64(p: Path) -> str:
    return base64.b64encode(p.read_bytes()).decode()


#: The Common Name of the client certificate the API server presents to admission webhooks.
WEBHOOK_CLIENT_NAME = "kube-apiserver-webhook-client"


def write_admission_config(directory: Path, crt: Path, key: Path) -> Path:
    """The API server's --admission-control-config-file: webhooks are called with the client
    certificate `crt` (a WebhookAdmissionConfiguration kubeconfig whose user "*" matches
    every webhook host, as the ports of the tests' webhooks vary)."""
    kubeconfig = directory / "webhook-client.kubeconfig"
    kubeconfig.write_text(
        f"""apiVersion: v1
kind: Config
users:
- name: "*"
  user:
    client-certificate-data: {_b64(crt)}
    client-key-data: {_b64(key)}
"""
    )
    kubeconfig.chmod(0o600)
    plugins = "".join(
        f"""- name: {plugin}
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: {kubeconfig}
"""
        for plugin in ("ValidatingAdmissionWebhook", "MutatingAdmissionWebhook")
    )
    config = directory / "admission.yaml"
    config.write_text(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n" + plugins
    )
    return config


def write_kubeconfig(path: Path, *, server: str, ca: Path, crt: Path, key: Path, user: str) -> Path:
    """A self-contained kubeconfig (certs embedded), so it can be copied anywhere."""
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: inferops-local
  cluster:
    server: {server}
    certificate-authority-data: {_b64(ca)}
users:
- name: {user}
  user:
    client-certificate-data: {_b64(crt)}
    client-key-data: {_b64(key)}
contexts:
- name: inferops-local
  context:
    cluster: inferops-local
    user: {user}
    namespace: default
current-context: inferops-local
"""
    )
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------- processes


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as dead
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    return True


def _kill_group(pid: int, binary: str, timeout: float = 10.0) -> None:
    """SIGTERM the process group of `pid` (only if `pid` still runs `binary`), then SIGKILL."""
    cmd = _cmdline(pid)
    if not cmd or Path(cmd[0]).name != Path(binary).name:
        return  # gone, or the pid was reused by something else: leave it alone
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return

    def sig_target(sig: int) -> None:
        if pgid == pid:  # a group leader, as _spawn starts them: the whole group
            os.killpg(pgid, sig)
        else:  # not started by us as a session leader: only that process
            os.kill(pid, sig)

    try:
        sig_target(signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _alive(pid):
            break
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        sig_target(signal.SIGKILL)  # also ends leftovers in the group
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


class ControlPlaneError(RuntimeError):
    pass


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager (+ kube-scheduler + kwok) on loopback.

    ``kwok``/``scheduler``: None means "if the binary was built".
    ``detach``: leave the processes running when this Python process exits (the CLI's
    ``up``); otherwise an atexit hook stops them.
    ``real_node``: also run a real node (``realnode.RealNode``): the API server then listens
    on the node's bridge address instead of loopback, so pods reach it through the
    ``kubernetes`` Service; ``node_images(containerd_socket)`` loads the images it needs.
    ``apiserver_args``: more kube-apiserver flags (e.g. an audit log for a benchmark).
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        bin_dir: str | os.PathLike[str] | None = None,
        *,
        kwok: bool | None = None,
        scheduler: bool | None = None,
        nodes: dict[str, tuple[dict[str, str], dict[str, str]]] | None = None,
        detach: bool = False,
        verbosity: int = 1,
        real_node: bool = False,
        node_images: Callable[[str], None] | None = None,
        apiserver_args: tuple[str, ...] = (),
    ):
        self.workdir = Path(workdir).expanduser().resolve()
        self.bin_dir = Path(bin_dir).expanduser() if bin_dir else default_bin_dir()
        self.logs_dir = self.workdir / "logs"
        self.pki_dir = self.workdir / "pki"
        self.pids_dir = self.workdir / "pids"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.state_file = self.workdir / "state.json"
        self.detach = detach
        self.verbosity = verbosity
        self.nodes = DEFAULT_NODES if nodes is None else nodes
        self.apiserver_args = apiserver_args
        self._want_kwok = kwok
        self._want_scheduler = scheduler
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.server = ""
        self.timings: dict[str, float] = {}
        self._ssl: ssl.SSLContext | None = None
        self._atexit = False
        self.host = "127.0.0.1"
        self.pki: _PKI | None = None
        self.node: RealNode | None = None
        self.node_problems: list[str] = []
        self.node_unavailable: str | None = None  # why no real node runs, when asked for one
        if real_node:
            self.node = RealNode(self, node_images)
            self.host = NODE_IP

    @property
    def webhook_client_ca(self) -> Path:
        """The CA of the client certificate the API server presents to admission webhooks
        (its Common Name is WEBHOOK_CLIENT_NAME)."""
        return self.pki_dir / "webhook-client" / "ca.crt"

    @property
    def webhook_client_cert(self) -> tuple[Path, Path]:
        """The API server's webhook client certificate and key (signed by that CA)."""
        directory = self.webhook_client_ca.parent
        return (
            directory / "apiserver-webhook-client.crt",
            directory / "apiserver-webhook-client.key",
        )

    # ---- binaries

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    def has(self, name: str) -> bool:
        return os.access(self.binary(name), os.X_OK)

    @property
    def kwok_enabled(self) -> bool:
        if self._want_kwok is None:
            return (
                self.has("kwok")
                and self.has("kube-scheduler")
                and (self.bin_dir / "kwok-stages.yaml").is_file()
            )
        return self._want_kwok

    @property
    def scheduler_enabled(self) -> bool:
        if self._want_scheduler is None:
            return self.has("kube-scheduler")
        return self._want_scheduler

    # ---- lifecycle

    def start(self, timeout: float = 180.0) -> ControlPlane:
        t0 = time.monotonic()
        for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
            if not self.has(name):
                raise ControlPlaneError(f"{self.binary(name)} missing: run tests/cluster/build.sh")
        if self._want_kwok and not self.has("kwok"):
            raise ControlPlaneError(
                f"{self.binary('kwok')} missing: run tests/cluster/build.sh kwok"
            )
        if self.kwok_enabled and not self.scheduler_enabled:
            raise ControlPlaneError(
                "kwok needs kube-scheduler (pods must be bound to the fake nodes)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        for d in (self.logs_dir, self.pids_dir):
            d.mkdir(exist_ok=True)
        if not self.detach and not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        try:
            self._start(t0, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, t0: float, timeout: float) -> None:
        deadline = t0 + timeout
        self.ports = {n: free_port() for n in ("etcd-client", "etcd-peer", "apiserver")}
        if self.node is not None:
            try:
                self.node.network_up()  # the API server listens on the bridge's address
            except NodeBusyError:
                self.node = None  # the running node is another's: stop() must not touch it
                raise
        self.server = f"https://{self.host}:{self.ports['apiserver']}"

        pki = self.pki = _PKI(self.pki_dir)
        srv_crt, srv_key = pki.issue(
            "apiserver", "kube-apiserver", server=True, sans=(*APISERVER_SANS, self.host)
        )
        kubelet_crt, kubelet_key = pki.issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)
        )
        adm_crt, adm_key = pki.issue("admin", "inferops-admin", ("system:masters",))
        admission_config = self._admission_config(pki)
        kc_dir = self.workdir / "kubeconfigs"
        kc_dir.mkdir(exist_ok=True)

        def component_kubeconfig(name: str, cn: str, orgs: tuple[str, ...] = ()) -> Path:
            crt, key = pki.issue(name, cn, orgs)
            return write_kubeconfig(
                kc_dir / name, server=self.server, ca=pki.ca_crt, crt=crt, key=key, user=cn
            )

        kcm_kc = component_kubeconfig("kube-controller-manager", "system:kube-controller-manager")
        sch_kc = component_kubeconfig("kube-scheduler", "system:kube-scheduler")
        # kwok writes the status of nodes and pods for many fake kubelets: give it admin
        kwok_kc = component_kubeconfig("kwok", "kwok", ("system:masters",))
        self._ssl = ssl.create_default_context(cafile=str(pki.ca_crt))
        self._ssl.load_cert_chain(str(adm_crt), str(adm_key))
        self.timings["pki"] = time.monotonic() - t0

        etcd_data = self.workdir / "etcd"
        etcd_port, peer_port = self.ports["etcd-client"], self.ports["etcd-peer"]
        self._spawn(
            "etcd",
            [
                "--name=inferops",
                f"--data-dir={etcd_data}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=inferops=http://127.0.0.1:{peer_port}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",  # a throw-away test store: durability is not needed
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
        )
        self._wait(lambda: self._etcd_healthy(etcd_port), deadline, "etcd /health")
        self.timings["etcd"] = time.monotonic() - t0

        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--bind-address={self.host}",
                f"--advertise-address={self.host}",
                f"--secure-port={self.ports['apiserver']}",
                f"--tls-cert-file={srv_crt}",
                f"--tls-private-key-file={srv_key}",
                f"--client-ca-file={pki.ca_crt}",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                # on loopback the "kubernetes" Endpoints would name 127.0.0.1, which Endpoints
                # validation rejects; with a real node it names the bridge address
                f"--endpoint-reconciler-type={'lease' if self.node else 'none'}",
                # namespaces that opt in send their pods to the real node (realnode.py)
                "--enable-admission-plugins=PodNodeSelector,PodTolerationRestriction",
                f"--admission-control-config-file={admission_config}",
                f"--kubelet-client-certificate={kubelet_crt}",
                f"--kubelet-client-key={kubelet_key}",
                f"--kubelet-certificate-authority={pki.ca_crt}",
                # the node's name does not resolve: dial its address
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                "--profiling=false",
                f"--v={self.verbosity}",
                *self.apiserver_args,
            ],
        )
        self._wait(self._apiserver_ready, deadline, "kube-apiserver /readyz")
        self.timings["kube-apiserver"] = time.monotonic() - t0
        self._write_admin_kubeconfig(pki, adm_crt, adm_key)

        # all default controllers; node-lifecycle removes the not-ready taint that admission
        # puts on new nodes once kwok reports them Ready (kwok renews their leases)
        controllers = "*"
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={kcm_kc}",
                f"--authentication-kubeconfig={kcm_kc}",
                f"--authorization-kubeconfig={kcm_kc}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",  # no serving endpoint
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_crt}",
                f"--cluster-signing-cert-file={pki.ca_crt}",
                f"--cluster-signing-key-file={pki.ca_key_file}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--controllers={controllers}",
                f"--v={self.verbosity}",
            ],
        )
        if self.scheduler_enabled:
            self._spawn(
                "kube-scheduler",
                [
                    f"--kubeconfig={sch_kc}",
                    f"--authentication-kubeconfig={sch_kc}",
                    f"--authorization-kubeconfig={sch_kc}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    "--secure-port=0",
                    f"--v={self.verbosity}",
                ],
            )
        if self.kwok_enabled:
            self._spawn(
                "kwok",
                [
                    f"--kubeconfig={kwok_kc}",
                    f"--config={self.bin_dir / 'kwok-stages.yaml'}",
                    "--manage-all-nodes=false",
                    f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                    "--node-lease-duration-seconds=40",
                    f"--cidr={KWOK_POD_CIDR}",
                    "--node-ip=10.244.255.1",
                ],
                env={"HOME": str(self.workdir)},
            )  # keep kwok's ~/.kwok lookups inside workdir
            for name, (labels, resources) in self.nodes.items():
                self._create_node(name, labels, resources)

        self._wait(
            self._default_sa_exists,
            deadline,
            "the default ServiceAccount (kube-controller-manager)",
        )
        if self.kwok_enabled:
            self._wait(self._nodes_schedulable, deadline, "kwok nodes Ready and untainted")
        if self.node is not None:
            self.node.start(deadline)
            self.timings["node"] = time.monotonic() - t0
        self.timings["ready"] = time.monotonic() - t0
        self._save_state()

    def _admission_config(self, pki: _PKI) -> Path:
        """The API server authenticates to admission webhooks with a client certificate of a
        CA of its own (webhook_client_ca), which webhooks that verify callers trust."""
        hook_pki = _PKI(
            self.webhook_client_ca.parent,
            ca_name="inferops-test-webhook-client-ca",
            service_accounts=False,
        )
        crt, key = hook_pki.issue("apiserver-webhook-client", WEBHOOK_CLIENT_NAME)
        assert (crt, key) == self.webhook_client_cert
        return write_admission_config(pki.dir, crt, key)

    def _write_admin_kubeconfig(self, pki: _PKI, crt: Path, key: Path) -> None:
        write_kubeconfig(
            self.kubeconfig,
            server=self.server,
            ca=pki.ca_crt,
            crt=crt,
            key=key,
            user="inferops-admin",
        )

    def _spawn(
        self,
        name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        binary: str | os.PathLike[str] | None = None,
    ) -> None:
        binary = Path(binary) if binary else self.binary(name)
        penv = dict(os.environ)
        penv.pop("KUBECONFIG", None)
        penv.update(env or {})
        with open(self.logs_dir / f"{name}.log", "ab") as log:
            log.write(
                f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} {binary} {' '.join(args)}\n".encode()
            )
            log.flush()
            p = subprocess.Popen(
                [str(binary), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=penv,
                start_new_session=True,  # its own process group: stop() kills the whole group
            )
        self.procs[name] = p
        (self.pids_dir / f"{name}.pid").write_text(f"{p.pid}\n")
        self._save_state()

    def spawn_extra(
        self, name: str, binary: str, args: list[str], env: dict[str, str] | None = None
    ) -> None:
        """Start another process under this control plane's supervision (logs, pid file)."""
        self._spawn(name, args, env=env, binary=binary)

    def wait(self, check: Any, deadline: float, what: str) -> None:
        self._wait(check, deadline, what)

    def _pid_files(self) -> dict[str, int]:
        pids: dict[str, int] = {n: p.pid for n, p in self.procs.items()}
        if self.pids_dir.is_dir():
            for f in self.pids_dir.glob("*.pid"):
                with contextlib.suppress(OSError, ValueError):
                    pids.setdefault(f.stem, int(f.read_text().strip()))
        return pids

    def pid_of(self, name: str) -> int | None:
        pid = self._pid_files().get(name)
        return pid if pid is not None and _alive(pid) else None

    def stop_component(self, name: str) -> None:
        pid = self._pid_files().get(name)
        if pid:
            _kill_group(pid, name, timeout=20.0)
        (self.pids_dir / f"{name}.pid").unlink(missing_ok=True)
        p = self.procs.pop(name, None)
        if p is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)

    def _save_state(self) -> None:
        state = {
            "host": self.host,
            "real_node": self.node is not None,
            "server": self.server,
            "ports": self.ports,
            "kubeconfig": str(self.kubeconfig),
            "bin_dir": str(self.bin_dir),
            "pids": {n: p.pid for n, p in self.procs.items()},
            "timings": self.timings,
        }
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")

    def _wait(self, check: Any, deadline: float, what: str) -> None:
        while True:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited with {p.returncode} while waiting for {what}; "
                        f"see {self.logs_dir / (name + '.log')}:\n{self.log_tail(name)}"
                    )
            try:
                if check():
                    return
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"timed out waiting for {what}; logs in {self.logs_dir}")
            time.sleep(0.2)

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join(
                (self.logs_dir / f"{name}.log").read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return ""

    # ---- HTTP helpers (admin identity)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        timeout: float = 10.0,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        """An admin request to the API server; returns (status, parsed JSON or text)."""
        assert self._ssl is not None
        assert self.server
        conn = http.client.HTTPSConnection(
            self.host, self.ports["apiserver"], context=self._ssl, timeout=timeout
        )
        try:
            headers = {"Accept": "application/json"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = content_type
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read().decode(errors="replace")
            try:
                return resp.status, json.loads(raw)
            except ValueError:
                return resp.status, raw
        finally:
            conn.close()

    @staticmethod
    def _etcd_healthy(port: int) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            return resp.status == 200 and json.loads(resp.read()).get("health") == "true"
        finally:
            conn.close()

    def _apiserver_ready(self) -> bool:
        status, _ = self.request("GET", "/readyz", timeout=3)
        return status == 200

    def _default_sa_exists(self) -> bool:
        status, _ = self.request(
            "GET", "/api/v1/namespaces/default/serviceaccounts/default", timeout=3
        )
        return status == 200

    def _nodes_ready(self) -> bool:
        status, body = self.request("GET", "/api/v1/nodes", timeout=3)
        if status != 200:
            return False
        ready = {
            n["metadata"]["name"]
            for n in body.get("items", [])
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        }
        return set(self.nodes) <= ready

    def _nodes_schedulable(self) -> bool:
        """Every fake node Ready and without the not-ready/unreachable taints."""
        if not self._nodes_ready():
            return False
        _, body = self.request("GET", "/api/v1/nodes", timeout=3)
        for n in body.get("items", []):
            if n["metadata"]["name"] in self.nodes:
                for t in n.get("spec", {}).get("taints") or []:
                    if t.get("key", "").startswith("node.kubernetes.io/"):
                        return False
        return True

    def _create_node(self, name: str, labels: dict[str, str], resources: dict[str, str]) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                    **labels,
                },
            },
            # a Node's status may be set on create (as a kubelet registers); kwok keeps it
            "status": {"capacity": dict(resources), "allocatable": dict(resources)},
        }
        status, body = self.request("POST", "/api/v1/nodes", node)
        if status not in (201, 409):
            raise ControlPlaneError(f"creating node {name}: HTTP {status}: {body}")

    # ---- stop

    def stop_node(self) -> list[str]:
        """Stop the real node alone (the control plane keeps running); returns what of the
        host could not be restored."""
        if self.node is None:
            return []
        self.node_problems = self.node.stop()
        self.node = None
        return self.node_problems

    def stop(self) -> None:
        """Stop every process this object (or the pid files in workdir) started; a real node
        is drained first and the host restored (``node_problems`` lists what was not)."""
        if self.node is not None:
            self.node_problems = self.node.stop()
        pids = self._pid_files()
        for name in reversed(COMPONENTS):
            pid = pids.get(name)
            if pid:
                _kill_group(pid, name)
            (self.pids_dir / f"{name}.pid").unlink(missing_ok=True)
        for p in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        self.procs.clear()

    def cleanup(self, keep_logs: bool = True) -> None:
        """Remove the workdir (data, certs, kubeconfigs); logs stay unless keep_logs=False."""
        if not self.workdir.exists():
            return
        for child in self.workdir.iterdir():
            if keep_logs and child.name == "logs":
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        if not keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- reattach (CLI)

    @classmethod
    def attach(cls, workdir: str | os.PathLike[str]) -> ControlPlane | None:
        """A ControlPlane for a running `up` in workdir, or None."""
        cp = cls(workdir, detach=True)
        try:
            state = json.loads(cp.state_file.read_text())
        except (OSError, ValueError):
            return None
        if state.get("real_node"):
            cp = cls(workdir, detach=True, real_node=True)
        cp.host = state.get("host", cp.host)
        cp.server = state.get("server", "")
        cp.ports = state.get("ports", {})
        cp.bin_dir = Path(state.get("bin_dir", cp.bin_dir))
        pki = cp.pki_dir
        if not cp.server or not (pki / "admin.crt").exists():
            return cp
        cp._ssl = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        cp._ssl.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return cp

    def healthy(self) -> bool:
        try:
            return self._ssl is not None and self._apiserver_ready()
        except (OSError, http.client.HTTPException):
            return False

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# --------------------------------------------------------------------------- CLI


def _cmd_up(args: argparse.Namespace) -> int:
    workdir = Path(args.dir).expanduser().resolve()
    existing = ControlPlane.attach(workdir)
    if existing is not None:
        if existing.healthy():
            print(f"control plane already up at {existing.server}", file=sys.stderr)
            print(existing.kubeconfig)
            return 0
        print("stale control plane state: stopping leftovers", file=sys.stderr)
        existing.stop()
        existing.cleanup(keep_logs=False)
    if args.build:
        build()
    real_node = not args.no_node
    if real_node:
        reason = unavailable_reason(default_bin_dir())
        if reason:
            print(f"no real node: {reason}", file=sys.stderr)
            real_node = False
    cp = ControlPlane(
        workdir,
        kwok=False if args.no_kwok else None,
        scheduler=False if args.no_scheduler else None,
        nodes=kwok_nodes(args.kwok_pods, args.kwok_public_nodes),
        detach=True,
        verbosity=args.v,
        real_node=real_node,
        node_images=node_images() if real_node else None,
    )
    t0 = time.monotonic()
    cp.start(timeout=args.timeout)
    parts = ["etcd", "kube-apiserver", "kube-controller-manager"]
    if cp.scheduler_enabled:
        parts.append("kube-scheduler")
    if cp.kwok_enabled:
        parts.append(f"kwok ({len(cp.nodes)} nodes)")
    if cp.node is not None:
        parts.append(f"real node {NODE_NAME} ({NODE_IP})")
    print(
        f"control plane up at {cp.server} in {time.monotonic() - t0:.1f}s "
        f"(apiserver ready after {cp.timings['kube-apiserver']:.1f}s): {', '.join(parts)}\n"
        f"logs: {cp.logs_dir}\n"
        f"use:  export KUBECONFIG={cp.kubeconfig}",
        file=sys.stderr,
    )
    print(cp.kubeconfig)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    workdir = Path(args.dir).expanduser().resolve()
    cp = ControlPlane.attach(workdir) or ControlPlane(workdir, detach=True)
    cp.stop()
    cp.cleanup(keep_logs=not args.purge)
    print(
        f"control plane in {workdir} stopped"
        + ("" if args.purge else f" (logs kept in {cp.logs_dir})"),
        file=sys.stderr,
    )
    if cp.node_problems:
        print("the host is not as before the real node started:", file=sys.stderr)
        for line in cp.node_problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    cp = ControlPlane.attach(Path(args.dir).expanduser().resolve())
    if cp is None or not cp.healthy():
        print("down", file=sys.stderr)
        return 1
    print(f"up at {cp.server}; kubeconfig {cp.kubeconfig}", file=sys.stderr)
    return 0


def _cmd_node_namespace(args: argparse.Namespace) -> int:
    """A Namespace whose pods run on the real node (and only there), for kubectl apply."""
    from realnode import NAMESPACE_ANNOTATIONS

    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": args.name, "annotations": NAMESPACE_ANNOTATIONS},
    }
    print(json.dumps(namespace, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("up", "down", "status"):
        p = sub.add_parser(name)
        p.add_argument(
            "--dir",
            default=str(default_cluster_dir()),
            help="work dir (default $INFEROPS_CLUSTER_DIR or ~/.cache/inferops/cluster)",
        )
        if name == "up":
            p.add_argument(
                "--build", action="store_true", help="run build.sh first (no-op when built)"
            )
            p.add_argument("--no-kwok", action="store_true", help="no simulated nodes")
            p.add_argument(
                "--no-node", action="store_true", help="no real node (kubelet + containerd)"
            )
            p.add_argument(
                "--no-scheduler", action="store_true", help="no kube-scheduler (implies --no-kwok)"
            )
            p.add_argument(
                "--kwok-pods",
                type=int,
                default=110,
                metavar="N",
                help="pods each kwok node holds (CPU and memory grow with it; default 110)",
            )
            p.add_argument(
                "--kwok-public-nodes",
                type=int,
                default=1,
                metavar="N",
                help="kwok nodes in the public pool (default 1)",
            )
            p.add_argument("--timeout", type=float, default=180.0)
            p.add_argument("-v", type=int, default=1, help="klog verbosity of the components")
        if name == "down":
            p.add_argument("--purge", action="store_true", help="also delete the logs")
    ns = sub.add_parser("node-namespace", help="print a Namespace whose pods run on the node")
    ns.add_argument("name")
    args = ap.parse_args(argv)
    if getattr(args, "no_scheduler", False):
        args.no_kwok = True
    commands = {
        "up": _cmd_up,
        "down": _cmd_down,
        "status": _cmd_status,
        "node-namespace": _cmd_node_namespace,
    }
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
