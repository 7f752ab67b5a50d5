"""The webhook server (Kopf's, with our checks) on loopback, called over real TLS.

With a client CA, a caller without a certificate that CA signed is refused in the TLS
handshake; with allowed names, a certificate of the CA with another name gets 403; a
review that disagrees with itself is denied before any handler runs. The API server's
side is in tests/cluster/test_admission.py.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from inferops.certs import ServingCert, client_certificate, self_signed
from inferops.cli import build_parser
from inferops.commands.operator import client_ca_problem
from inferops.handlers.run import WebhookOptions
from inferops.handlers.webhook import webhook_server
from tests.unit.rules_table import rts, version

Call = Callable[[ServingCert | None, dict[str, Any]], Awaitable[tuple[int, Any]]]


def review(namespace: str = "team-a", obj_namespace: str = "team-a") -> dict[str, Any]:
    obj = rts(version("1.0.0", 100))
    obj["metadata"]["namespace"] = obj_namespace
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "serving.inferops.dev", "version": "v1alpha1", "kind": obj["kind"]},
            "resource": {
                "group": "serving.inferops.dev",
                "version": "v1alpha1",
                "resource": "realtimeservices",
            },
            "name": "svc",
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "someone"},
            "object": obj,
        },
    }


async def handled(request: Any, **_: Any) -> Any:
    """Stands in for Kopf's admission engine: allows, and says it saw the review."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": request["request"]["uid"], "allowed": True, "warnings": ["seen"]},
    }


def serve(options: WebhookOptions, calls: Callable[[Call], Awaitable[None]]) -> None:
    """Runs the server for `options` on loopback while `calls` talks to it."""

    async def main() -> None:
        server = webhook_server(options)
        assert options.cert_dir is not None
        serving_ca = str(options.cert_dir / "ca.crt")
        async with server:
            configs = server(handled)
            config = await configs.__anext__()
            url = str(config["url"])
            port = urllib.parse.urlsplit(url).port

            async def call(client: ServingCert | None, body: dict[str, Any]) -> tuple[int, Any]:
                context = ssl.create_default_context(cafile=serving_ca)
                if client is not None:
                    context.load_cert_chain(client.certfile, client.keyfile)
                async with (
                    aiohttp.ClientSession() as session,
                    session.post(
                        f"https://127.0.0.1:{port}/realtimeservices", json=body, ssl=context
                    ) as response,
                ):
                    text = await response.text()
                    return response.status, json.loads(text) if response.status == 200 else text

            try:
                await calls(call)
            finally:
                await configs.aclose()

    asyncio.run(main())


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    serving = self_signed(tmp_path / "serving", ["127.0.0.1"])
    return {
        "serving": serving,
        "apiserver": client_certificate(tmp_path / "apiserver", "kube-apiserver-webhook-client"),
        "forger": client_certificate(tmp_path / "forger", "kube-apiserver-webhook-client"),
    }


def options(pki: dict[str, Any], **extra: Any) -> WebhookOptions:
    return WebhookOptions(
        port=0, address="127.0.0.1", cert_dir=pki["serving"].cafile.parent, **extra
    )


def test_a_caller_without_a_certificate_of_the_client_ca_is_refused_in_the_handshake(
    pki: dict[str, Any],
) -> None:
    async def calls(call: Call) -> None:
        status, answer = await call(pki["apiserver"], review())
        assert status == 200 and answer["response"]["allowed"] is True
        for forger in (None, pki["forger"]):  # no certificate; one from another CA
            with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
                await call(forger, review())

    serve(options(pki, client_ca=pki["apiserver"].cafile), calls)


def test_without_a_client_ca_any_caller_is_served(pki: dict[str, Any]) -> None:
    async def calls(call: Call) -> None:
        status, answer = await call(None, review())
        assert status == 200 and answer["response"]["allowed"] is True

    serve(options(pki), calls)


def test_allowed_names_refuse_other_certificates_of_the_ca(pki: dict[str, Any]) -> None:
    async def calls(call: Call) -> None:
        status, _ = await call(pki["apiserver"], review())
        assert status == 403

    narrowed = options(pki, client_ca=pki["apiserver"].cafile, client_names=("kube-apiserver",))
    serve(narrowed, calls)


def test_a_review_that_disagrees_with_itself_is_denied_before_any_handler(
    pki: dict[str, Any],
) -> None:
    async def calls(call: Call) -> None:
        status, answer = await call(None, review("team-a", "victim"))
        assert status == 200
        assert answer["response"] == {
            "uid": "u-1",
            "allowed": False,
            "status": {"code": 400, "message": "the object's namespace is not the review's"},
        }

    serve(options(pki), calls)


def test_the_client_ca_is_the_only_one_trusted(pki: dict[str, Any]) -> None:
    """Kopf's server context loads our CA and nothing else (no system CAs: a public CA's
    client certificate must not pass)."""
    server = webhook_server(options(pki, client_ca=pki["apiserver"].cafile))
    _, context = server._build_ssl()
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED
    issuers = [dict(rdn[0] for rdn in ca["subject"]) for ca in context.get_ca_certs()]
    assert issuers == [{"commonName": "inferops-webhook-client-ca"}]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--webhook-client-name", "x"], "--webhook-client-name needs --webhook-client-ca"),
        (["--webhook-client-ca", "/nonexistent/ca.crt"], "--webhook-client-ca needs"),
        (
            ["--webhook-port", "9443", "--webhook-client-ca", "/nonexistent/ca.crt"],
            "--webhook-client-ca /nonexistent/ca.crt: not a readable PEM CA",
        ),
    ],
)
def test_client_auth_options_are_checked_before_start(argv: list[str], message: str) -> None:
    args = build_parser().parse_args(["operator", *argv])
    problem = client_ca_problem(args)
    assert problem is not None and problem.startswith(message)
