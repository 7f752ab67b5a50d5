"""The webhook server: Kopf's own, with its caller and each review checked before Kopf.

- With a client CA (`--webhook-client-ca`) the TLS handshake requires a certificate signed
  by it: a pod that can reach the port but holds no such certificate never sends a byte of
  a review. `--webhook-client-name` narrows it to the API server's own certificate when the
  CA signs others too (what kube-apiserver's `--requestheader-allowed-names` does).
- Every review must agree with itself before any handler sees it: one namespace, a valid
  one, in the request and in its objects, and the kind the request names. Handlers then
  read only that namespace (a forged review naming another namespace in its object, or
  none, used to make the webhook list other namespaces).
"""

from __future__ import annotations

import logging
import re
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp.web
import kopf

from inferops.api.kinds import ALL_KINDS
from inferops.api.names import DNS1123_LABEL
from inferops.certs import self_signed
from inferops.handlers.run import WebhookOptions

logger = logging.getLogger(__name__)
REVIEW_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
MAX_NAMESPACE_LENGTH = 63


def _namespace_problem(namespace: Any) -> str | None:
    if namespace is None or namespace == "":
        return "the review names no namespace"
    if (
        not isinstance(namespace, str)
        or len(namespace) > MAX_NAMESPACE_LENGTH
        or not re.fullmatch(DNS1123_LABEL, namespace)
    ):
        return "the review's namespace is not a DNS-1123 label"
    return None


def _object_problem(obj: Any, namespace: str, kind: Any) -> str | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        return "the review's object has no metadata"
    if obj.get("kind") != kind:
        return "the object's kind is not the review's"
    metadata = obj["metadata"]
    if metadata.get("namespace") in (None, ""):
        # The API server fills it in before admission; a missing one means the review's.
        metadata["namespace"] = namespace
    elif metadata["namespace"] != namespace:
        return "the object's namespace is not the review's"
    return None


def review_problem(request: Any) -> str | None:
    """Why an AdmissionReview cannot be a real one for our kinds (None when it can).

    Fills in an object's missing namespace from the request's. The answers name no
    object, so a forged review learns nothing from them.
    """
    payload = request.get("request") if isinstance(request, Mapping) else None
    if not isinstance(payload, Mapping):
        return "not an admission request"
    namespace = payload.get("namespace")
    problem = _namespace_problem(namespace)
    if problem is not None or not isinstance(namespace, str):
        return problem or "the review names no namespace"
    requested = payload.get("kind")
    kind = requested.get("kind") if isinstance(requested, Mapping) else None
    if kind not in ALL_KINDS:
        return "the review is not for an Inferops kind"
    for key in ("object", "oldObject"):
        obj = payload.get(key)
        if obj is None and key == "oldObject":
            continue
        problem = _object_problem(obj, namespace, kind)
        if problem is not None:
            return problem
    return None


def denial(request: Any, message: str) -> dict[str, Any]:
    """The AdmissionReview response refusing `request` with `message`."""
    payload = request.get("request") if isinstance(request, Mapping) else None
    uid = payload.get("uid") if isinstance(payload, Mapping) else None
    version = request.get("apiVersion") if isinstance(request, Mapping) else None
    return {
        "apiVersion": version if version in REVIEW_VERSIONS else REVIEW_VERSIONS[0],
        "kind": "AdmissionReview",
        "response": {
            "uid": uid if isinstance(uid, str) else "",
            "allowed": False,
            "status": {"code": 400, "message": message},
        },
    }


def peer_names(sslpeer: Mapping[str, Any] | None) -> set[str]:
    """The Common Name and DNS names of a verified client certificate (ssl.getpeercert())."""
    names: set[str] = set()
    for rdn in (sslpeer or {}).get("subject", ()):
        names.update(value for key, value in rdn if key == "commonName")
    for kind, value in (sslpeer or {}).get("subjectAltName", ()):
        if kind == "DNS":
            names.add(value)
    return names


class WebhookServer(kopf.WebhookServer):
    """Kopf's webhook server with the caller's name and each review checked first."""

    def __init__(self, *, client_names: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client_names = frozenset(client_names)

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        async def checked(
            request: Any,
            *,
            webhook: str | None = None,
            headers: dict[str, str] | None = None,
            sslpeer: dict[str, Any] | None = None,
        ) -> Any:
            if self.client_names and not peer_names(sslpeer) & self.client_names:
                logger.warning("Webhook call refused: client certificate %s", peer_names(sslpeer))
                raise aiohttp.web.HTTPForbidden(reason="client certificate name not allowed")
            problem = review_problem(request)
            if problem is not None:
                logger.warning("Admission review refused: %s", problem)
                return denial(request, problem)
            return await fn(request, webhook=webhook, headers=headers, sslpeer=sslpeer)

        async for config in super().__call__(checked):
            yield config


def webhook_server(options: WebhookOptions) -> WebhookServer:
    """The server for `options`: the mounted certificate (or a self-signed one), and TLS
    client verification against `client_ca` when it is given."""
    host = options.host or options.address
    cert_dir = options.cert_dir
    if cert_dir is None:
        cert_dir = Path(tempfile.mkdtemp(prefix="inferops-webhook-"))
        self_signed(cert_dir, [host, "localhost"])
    client_auth: dict[str, Any] = {}
    if options.client_ca is not None:
        # Kopf builds a fresh server context that trusts no system CA for clients, and
        # loads only this one.
        client_auth = {"verify_mode": ssl.CERT_REQUIRED, "verify_cafile": options.client_ca}
    return WebhookServer(
        addr=options.address,
        port=options.port,
        host=host,
        certfile=cert_dir / "tls.crt",
        pkeyfile=cert_dir / "tls.key",
        cafile=cert_dir / "ca.crt",
        client_names=options.client_names,
        **client_auth,
    )
