"""Which addresses an https:// (or http://) source may make the worker connect to.

A URL in a manifest is data that anyone able to write the manifest chose, and the worker
runs inside the cluster: left alone it would fetch the node's loopback, the cloud's
metadata service (169.254.169.254) or any Service, and hand the body to the model. So, as
SSRF filters do (Stripe's Smokescreen, Envoy's and Go's dialer controls):

- the host is resolved here, every address it resolves to is checked, and the connection
  goes to an address that was checked (no second lookup that DNS could answer otherwise);
- loopback, link-local, private, shared (100.64/10), reserved, multicast and unspecified
  addresses are refused, in whatever form they are written (127.1, 0x7f000001,
  2130706433, 0177.0.0.1, [::1], [::ffff:127.0.0.1], 6to4 and Teredo wrappings);
- only the networks of an allow-list (the catalog's `batch.allowedNetworks`, for a
  private object store) are let through despite that.

The resolver is a parameter so that tests can say what a name resolves to without DNS.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from inferops.storage.errors import StorageError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
"""(host, port) -> the addresses the host resolves to (OSError when it does not)."""

# (what the address is, the ipaddress property that says so); the first that holds is told.
_SPECIAL = (
    ("loopback", "is_loopback"),
    ("link-local", "is_link_local"),
    ("unspecified", "is_unspecified"),
    ("multicast", "is_multicast"),
    ("private", "is_private"),
    ("reserved", "is_reserved"),
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class EgressError(StorageError):
    """A source whose address the policy refuses."""


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses getaddrinfo gives for host (both families)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def numeric_host(host: str) -> Address | None:
    """The address a host written as a number stands for, in every form the C library
    accepts (inet_aton: 127.1, 0x7f000001, 2130706433, 0177.0.0.1), else None."""
    try:
        return ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        pass
    if ":" in host:
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _embedded(ip: Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries and may be routed to (mapped, 6to4, Teredo,
    NAT64)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = [ip.sixtofour] if ip.sixtofour is not None else []
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def plain(ip: Address) -> Address:
    """An IPv4-mapped IPv6 address (::ffff:127.0.0.1) as the IPv4 address it is."""
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return mapped or ip


def special_kind(ip: Address) -> str | None:
    """Why an address is not a public one ("loopback", "private", ...), or None."""
    ip = plain(ip)
    for candidate in (ip, *_embedded(ip)):
        for kind, attribute in _SPECIAL:
            if getattr(candidate, attribute):
                return kind
        if not candidate.is_global:  # e.g. 100.64.0.0/10, shared address space
            return "non-global"
    return None


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs as networks (host bits allowed: 10.1.2.3/8 means 10.0.0.0/8); ValueError
    naming the first that is not one."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(str(cidr).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{cidr!r} is not an IP network in CIDR form") from None
    return tuple(networks)


@dataclass(frozen=True)
class EgressPolicy:
    """Public addresses, plus the `allowed` networks."""

    allowed: tuple[Network, ...] = ()
    resolver: Resolver = system_resolver

    @classmethod
    def allowing(cls, cidrs: Iterable[str], resolver: Resolver = system_resolver) -> EgressPolicy:
        return cls(parse_networks(cidrs), resolver)

    @classmethod
    def unrestricted(cls, resolver: Resolver = system_resolver) -> EgressPolicy:
        """Every address (for programs whose URLs come from their own configuration)."""
        return cls.allowing(["0.0.0.0/0", "::/0"], resolver)

    def _allows(self, ip: Address) -> bool:
        return any(ip in net for net in self.allowed)

    def addresses(self, host: str, port: int) -> list[Address]:
        """What host resolves to, every address checked, without duplicates, in the
        resolver's order; EgressError when it resolves to nothing or to any address the
        policy refuses (one bad answer refuses the host, so a name that resolves to a
        public and a private address is refused)."""
        numeric = numeric_host(host)
        if numeric is not None:
            found: list[Address] = [plain(numeric)]
        else:
            try:
                answers = self.resolver(host, port)
            except (OSError, UnicodeError) as exc:
                reason = getattr(exc, "strerror", None) or exc
                raise EgressError(f"cannot resolve {host}: {reason}") from None
            # getaddrinfo repeats an address once per socket type and protocol.
            found = list(
                dict.fromkeys(plain(ipaddress.ip_address(a.partition("%")[0])) for a in answers)
            )
            if not found:
                raise EgressError(f"cannot resolve {host}: no address")
        for ip in found:
            kind = None if self._allows(ip) else special_kind(ip)
            if kind is not None:
                raise EgressError(
                    f"refusing to connect to {host} ({ip}: a {kind} address, "
                    "not in the allowed networks)"
                )
        return found

    def connect_address(self, host: str, port: int) -> str:
        """The checked address to connect to for host (the first answer)."""
        return str(self.addresses(host, port)[0])
