"""GET over a connection to an address the egress policy checked, redirects followed by hand.

urllib would look the host up again when it connects (after any check of ours), follow
redirects to any address and from https:// to http://, and take proxies from the
environment. Here each hop is checked by an `EgressPolicy` and connected to the address
that was checked; TLS still verifies the certificate for the URL's host name (SNI) and the
Host header names it, so to the server a pinned connection looks like any other. Proxies
are not used: a proxy would do the lookup we have to check.

Errors never quote the response: a body (or a reason phrase) is the server's text, and a
source may point at a server that answers with secrets.
"""

from __future__ import annotations

import http
import http.client
import socket
import ssl
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

from inferops.storage.egress import EgressPolicy
from inferops.storage.errors import StorageError

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = "inferops"


def status_text(status: int) -> str:
    """HTTP 404 Not Found: the standard phrase, never the server's own."""
    try:
        return f"HTTP {status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _pin(connection: http.client.HTTPConnection, addresses: list[str]) -> None:
    """Makes connection connect to the first of addresses that answers (all were checked;
    a name's IPv6 answer may come first where pods have no IPv6 route); its host stays for
    SNI, the certificate check and the Host header."""

    def create(
        target: tuple[str, int], timeout: float, source: tuple[str, int] | None = None
    ) -> socket.socket:
        error: OSError | None = None
        for address in addresses:
            try:
                return socket.create_connection((address, target[1]), timeout, source)
            except OSError as exc:
                error = exc
        assert error is not None  # addresses is never empty
        raise error

    connection._create_connection = create  # type: ignore[attr-defined]


def _target(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of an http(s) URL; StorageError otherwise."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise StorageError(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise StorageError("not an http(s) URL with a host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, parts.hostname, port or _DEFAULT_PORTS[scheme], path


def _redirect(url: str, location: str | None) -> str:
    """Where a redirect leads; StorageError for one we do not follow."""
    if not location:
        raise StorageError("a redirect without a Location")
    following = urllib.parse.urljoin(url, location)
    was, now = urllib.parse.urlsplit(url).scheme.lower(), _target(following)[0]
    if was == "https" and now != "https":
        raise StorageError("refusing a redirect from https:// to http://")
    return following


class HttpClient:
    """GETs URLs through an egress policy; every socket operation times out."""

    def __init__(self, policy: EgressPolicy, timeout: float) -> None:
        self.policy = policy
        self.timeout = timeout
        self._context: ssl.SSLContext | None = None

    def _connection(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        scheme, host, port, path = _target(url)
        addresses = [str(ip) for ip in self.policy.addresses(host, port)]
        connection: http.client.HTTPConnection
        if scheme == "http":
            connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
        else:
            if self._context is None:  # made once: loading the CA bundle takes milliseconds
                self._context = ssl.create_default_context()
            connection = http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=self._context
            )
        _pin(connection, addresses)
        return connection, path

    @contextmanager
    def get(self, url: str) -> Iterator[http.client.HTTPResponse]:
        """The 2xx response to GET url (read its body inside the block); StorageError for
        any other answer, a refused address or redirect, or more than MAX_REDIRECTS."""
        for _ in range(MAX_REDIRECTS + 1):
            connection, path = self._connection(url)
            try:
                connection.request("GET", path, headers={"User-Agent": USER_AGENT})
                response = connection.getresponse()
                if response.status in _REDIRECTS:
                    url = _redirect(url, response.getheader("Location"))
                    continue
                if not 200 <= response.status < 300:
                    raise StorageError(status_text(response.status))
                yield response
                return
            finally:
                connection.close()
        raise StorageError(f"more than {MAX_REDIRECTS} redirects")
