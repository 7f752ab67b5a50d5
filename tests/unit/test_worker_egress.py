"""https:// sources and the egress policy: special addresses refused in every form, every
resolved address and every redirect hop checked, the connection pinned to the address that
was checked, and no response body in any message.

No traffic leaves loopback: refusals are checked with resolver answers injected at the
policy's own boundary (a resolver that fails the test if it is asked about a number), and
what is let through goes to real HTTP(S) servers on 127.0.0.x.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import ssl
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from inferops.api.application import AIApplicationSpec
from inferops.api.batch import BatchServiceSpec
from inferops.api.catalog import BatchLimits, default_catalog
from inferops.certs import self_signed
from inferops.cli import main
from inferops.contract.batch_worker import config_from_env, config_from_service
from inferops.resources.batch import BatchInputs, batch_job
from inferops.storage import EgressError, EgressPolicy, Location, Storage, StorageError
from inferops.storage.egress import special_kind
from inferops.worker.runner import run_local, run_worker
from tests.unit.rules_table import app as rules_app
from tests.unit.rules_table import bs
from tests.worker_support import (
    FILE_SCHEMA,
    Recording,
    application,
    batch_service,
    recording_model,
    serve,
)

SECRET = "SECRET-TOKEN-7f3a"  # what a metadata service would answer: never in any output


def no_dns(host: str, port: int) -> Sequence[str]:
    raise AssertionError(f"{host} is a number: it must not be looked up")


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.1", "loopback"),
        ("0x7f000001", "loopback"),
        ("0x7f.1", "loopback"),
        ("2130706433", "loopback"),
        ("0177.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("0xa9fea9fe", "link-local"),
        ("2852039166", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("10.0.0.1", "private"),
        ("012.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("0.0.0.0", "unspecified"),
        ("0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private"),  # reserved; Python files 240/4 under is_private too
        ("64:ff9b::a9fe:a9fe", "reserved"),  # NAT64
        ("100.64.0.1", "non-global"),  # shared address space (carrier NAT)
    ],
)
def test_special_addresses_are_refused_in_every_form(host: str, kind: str) -> None:
    with pytest.raises(EgressError, match=f"a {kind} address"):
        EgressPolicy(resolver=no_dns).connect_address(host, 443)


def test_every_resolved_address_is_checked() -> None:
    answers = {
        "public.test": ["93.184.216.34", "2606:2800:220:1::1"],
        "mixed.test": ["93.184.216.34", "10.1.2.3"],  # one bad answer refuses the name
        "metadata.test": ["169.254.169.254"],
        "nothing.test": [],
    }

    def resolver(host: str, port: int) -> Sequence[str]:
        if host not in answers:
            raise OSError(-2, "Name or service not known")
        return answers[host]

    policy = EgressPolicy(resolver=resolver)
    assert policy.connect_address("public.test", 443) == "93.184.216.34"
    with pytest.raises(EgressError, match=r"mixed\.test \(10\.1\.2\.3: a private address"):
        policy.connect_address("mixed.test", 443)
    with pytest.raises(EgressError, match="link-local"):
        policy.connect_address("metadata.test", 443)
    with pytest.raises(EgressError, match=r"cannot resolve nothing\.test: no address"):
        policy.connect_address("nothing.test", 443)
    with pytest.raises(EgressError, match=r"cannot resolve gone\.test: Name or service not known"):
        policy.connect_address("gone.test", 443)


def test_allowed_networks_let_private_addresses_through() -> None:
    policy = EgressPolicy.allowing(["10.20.0.0/16", "fd00::/8"], resolver=no_dns)
    assert policy.connect_address("10.20.3.4", 443) == "10.20.3.4"
    assert policy.connect_address("::ffff:10.20.3.4", 443) == "10.20.3.4"
    assert policy.connect_address("fd00::5", 443) == "fd00::5"
    with pytest.raises(EgressError, match="private"):
        policy.connect_address("10.21.0.1", 443)
    with pytest.raises(EgressError, match="link-local"):
        policy.connect_address("169.254.169.254", 443)
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not an IP network"):
        EgressPolicy.allowing(["10.0.0.0/33"])
    assert special_kind(EgressPolicy.allowing([]).addresses("8.8.8.8", 443)[0]) is None


# ---- real servers on loopback ------------------------------------------------------------


@dataclass
class Host:
    """What a test server answers (path -> (status, headers, body)) and what it was asked."""

    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (Host header, path)


@contextmanager
def http_host(
    host: Host, address: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> Iterator[int]:
    """An HTTP (or, with tls, HTTPS) server on address; yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host.seen.append((self.headers.get("Host", ""), self.path))
            status, headers, body = host.routes.get(self.path, (404, {}, SECRET.encode()))
            self.send_response(status, f"{SECRET} reason")  # a hostile reason phrase
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server context whose certificate names files.test, 127.0.0.1 and 127.0.0.2, its CA the only
    one the client trusts (SSL_CERT_FILE)."""
    cert = self_signed(tmp_path / "tls", ["files.test", "127.0.0.1", "127.0.0.2"])
    monkeypatch.setenv("SSL_CERT_FILE", str(cert.cafile))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.certfile, cert.keyfile)
    return context


def https(url: str) -> Location:
    return Location("https", url)  # http:// too: what the worker makes of allowed http sources


def test_connection_is_pinned_to_the_checked_address_with_sni_and_host(tls: Any) -> None:
    host = Host(routes={"/a.csv?X-Sig=1": (200, {}, b"1,2,3,4\n")})
    lookups: list[str] = []

    def resolver(name: str, port: int) -> Sequence[str]:
        lookups.append(name)
        return ["127.0.0.1"]  # files.test has no DNS record: only our pinned address works

    storage = Storage(egress=EgressPolicy.allowing(["127.0.0.0/8"], resolver))
    with http_host(host, tls=tls) as port:
        data = storage.read_within(https(f"https://files.test:{port}/a.csv?X-Sig=1"), 100)
        refused = Storage(egress=EgressPolicy(resolver=resolver))
        with pytest.raises(StorageError, match="loopback"):
            refused.read_within(https(f"https://files.test:{port}/a.csv?X-Sig=1"), 100)
    assert data == b"1,2,3,4\n"
    assert host.seen == [(f"files.test:{port}", "/a.csv?X-Sig=1")]  # once: refused never sent
    assert lookups == ["files.test", "files.test"]  # once per request: no second lookup


def test_each_checked_address_is_tried_in_turn() -> None:
    """A name's first answer may not be reachable (an IPv6 address where pods have no IPv6
    route): the next checked one is tried, never an unchecked one."""
    host = Host(routes={"/a": (200, {}, b"ok")})

    def resolver(name: str, port: int) -> Sequence[str]:
        return ["127.0.0.5", "127.0.0.1", "127.0.0.1"]  # nothing listens on the first

    storage = Storage(egress=EgressPolicy.allowing(["127.0.0.0/8"], resolver))
    with http_host(host) as port:
        assert storage.read_within(https(f"http://two.test:{port}/a"), 10) == b"ok"
    assert host.seen == [(f"two.test:{port}", "/a")]
    policy = EgressPolicy.allowing(["127.0.0.0/8"], resolver)
    assert [str(ip) for ip in policy.addresses("two.test", 80)] == ["127.0.0.5", "127.0.0.1"]


def test_redirects_are_checked_hop_by_hop(tls: Any) -> None:
    inner, outer = Host(routes={"/x": (200, {}, SECRET.encode())}), Host()
    storage = Storage(egress=EgressPolicy.allowing(["127.0.0.2/32"], resolver=no_dns))
    with http_host(inner, "127.0.0.3") as inner_port, http_host(outer, "127.0.0.2") as port:
        base = f"http://127.0.0.2:{port}"
        outer.routes = {
            "/to-inner": (302, {"Location": f"http://127.0.0.3:{inner_port}/x"}, b""),
            "/loop": (307, {"Location": "/loop"}, b""),
            "/to-self": (301, {"Location": "/ok"}, b""),
            "/ok": (200, {}, b"fine"),
        }
        with pytest.raises(StorageError, match=r"127\.0\.0\.3: a loopback address"):
            storage.read_within(https(f"{base}/to-inner"), 100)
        with pytest.raises(StorageError, match="more than 5 redirects"):
            storage.read_within(https(f"{base}/loop"), 100)
        assert storage.read_within(https(f"{base}/to-self"), 100) == b"fine"
        # https -> http is refused, even to an allowed address.
        downgrade = Host(routes={"/d": (302, {"Location": f"{base}/ok"}, b"")})
        with (
            http_host(downgrade, "127.0.0.2", tls) as tls_port,
            pytest.raises(StorageError, match="from https:// to http://"),
        ):
            storage.read_within(https(f"https://127.0.0.2:{tls_port}/d"), 100)
    assert inner.seen == []
    assert [path for _, path in outer.seen].count("/loop") == 6
    assert [path for _, path in outer.seen].count("/ok") == 1  # not after the downgrade


def test_errors_never_quote_the_response() -> None:
    host = Host(routes={"/f": (403, {}, SECRET.encode())})
    storage = Storage(egress=EgressPolicy.allowing(["127.0.0.0/8"]))
    with http_host(host) as port, pytest.raises(StorageError) as caught:
        storage.read_within(https(f"http://127.0.0.1:{port}/f"), 100)
    assert str(caught.value) == "download failed: HTTP 403 Forbidden"


# ---- the worker ----------------------------------------------------------------------------


def manifest_of(s3: Any, sources: list[str]) -> None:
    s3.create_bucket(Bucket="data")
    body = "".join(json.dumps({"source": s}) + "\n" for s in sources)
    s3.put_object(Bucket="data", Key="in.manifest", Body=body.encode())


def lines_of(s3: Any, key: str) -> list[dict[str, Any]]:
    body = s3.get_object(Bucket="data", Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines()]


def test_worker_refuses_sources_on_loopback_and_never_echoes_them(s3: Any) -> None:
    """What an SSRF got before: the worker fetched loopback (here standing in for the
    metadata service) and the body came back in the results and error messages."""
    secret = Host(routes={"/latest/meta-data": (200, {}, f"{SECRET},1,2,3\n".encode())})
    recording = Recording()
    with http_host(secret) as port, serve(recording_model(recording)) as model:
        sources = [
            f"http://127.0.0.1:{port}/latest/meta-data",
            f"http://127.1:{port}/latest/meta-data",
            f"http://2130706433:{port}/latest/meta-data",
            f"http://[::ffff:127.0.0.1]:{port}/latest/meta-data",
            f"https://localhost:{port}/latest/meta-data",
        ]
        manifest_of(s3, sources)
        service = batch_service("s3://data/in.manifest", "s3://data/out/")
        config = config_from_service(
            service, application(FILE_SCHEMA), model, "E", allow_http_sources=True
        )
        summary = asyncio.run(run_worker(config))
    lines = lines_of(s3, "out/infer-result-E.manifest")
    assert summary.failed == 5 and secret.seen == [] and recording.requests == []
    for line in lines:
        assert line["result"] == "FAILED"
        assert "a loopback address, not in the allowed networks" in line["error_message"]
        assert SECRET not in json.dumps(line)


def test_allowed_network_reaches_a_private_https_store(s3: Any, tls: Any) -> None:
    host = Host(routes={"/img.png?sig=1": (200, {}, b"\x89PNG....")})
    recording = Recording()
    with http_host(host, tls=tls) as port, serve(recording_model(recording)) as model:
        source = f"https://127.0.0.1:{port}/img.png?sig=1"
        manifest_of(s3, [source])
        service = batch_service("s3://data/in.manifest", "s3://data/out/")
        app = application(FILE_SCHEMA)
        [refused] = run_local(service, app, model, "R")
        [allowed] = run_local(service, app, model, "A", allowed_networks=["127.0.0.1/32"])
    assert (refused.failed, allowed.succeeded) == (1, 1)
    [line] = lines_of(s3, "out/infer-result-A.manifest")
    assert line["inference-loc"] == "s3://data/out/infer-result-A/img.png_result.txt"
    assert recording.requests == [("multipart/form-data", ("images", "img.png"))]
    assert host.seen == [(f"127.0.0.1:{port}", "/img.png?sig=1")]


def test_batch_run_allows_networks_on_the_command_line(
    tmp_path: Path, tls: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    host = Host(routes={"/a.png": (200, {}, b"png")})
    recording = Recording()
    with http_host(host, tls=tls) as port, serve(recording_model(recording)) as model:
        (tmp_path / "in.manifest").write_text(
            json.dumps({"source": f"https://127.0.0.1:{port}/a.png"}) + "\n"
        )
        service = batch_service(str(tmp_path / "in.manifest"), str(tmp_path / "out"))
        (tmp_path / "bs.yaml").write_text(json.dumps(service))
        (tmp_path / "app.yaml").write_text(json.dumps(application(FILE_SCHEMA)))
        command = ["batch", "run", "-f", str(tmp_path / "bs.yaml"), "--app"]
        command += [str(tmp_path / "app.yaml"), "--model-url", model, "--task-id"]
        assert main([*command, "refused"]) == 0
        assert main([*command, "allowed", "--allow-network", "127.0.0.0/8"]) == 0
        assert main([*command, "bad", "--allow-network", "localhost"]) == 1
    out, err = capsys.readouterr()
    assert [json.loads(line)["failed"] for line in out.splitlines() if "{" in line] == [1, 0]
    assert err.strip() == ("inferops batch run: allowed_networks[0]: 'localhost' is not a CIDR")
    assert host.seen == [(f"127.0.0.1:{port}", "/a.png")]


def test_the_job_carries_the_catalog_egress_and_limits_to_its_workers() -> None:
    """The operator's side: what the catalog allows reaches the pods, local paths never."""
    obj = {**bs(), "metadata": {"name": "job", "namespace": "ns", "uid": "0f1e2d3c4b5a"}}
    spec = BatchServiceSpec.model_validate(obj["spec"])
    version = AIApplicationSpec.model_validate(rules_app()["spec"]).versions[0]
    catalog = default_catalog().model_copy(
        update={"batch": BatchLimits(allowed_networks=["10.96.0.0/12"], max_response_bytes=1024)}
    )
    job = batch_job(BatchInputs(obj, spec, version, catalog))
    [worker] = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in worker["env"] if "value" in e}
    config = config_from_env(env)
    assert config.allowed_networks == ["10.96.0.0/12"] and config.max_response_bytes == 1024
    assert config.allow_local_paths is False
    default = batch_job(BatchInputs(obj, spec, version, default_catalog()))
    [worker] = default["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in worker["env"] if "value" in e}
    assert config_from_env(env).allowed_networks == []
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300/8' is not an IP network"):
        BatchLimits(allowed_networks=["10.0.0.300/8"])
