"""Outbound requests to addresses that tenants choose: webhook subscriptions and `http_request` steps.

A URL there is user input, so the server must not become a way into its own network (cloud
metadata at 169.254.169.254, services on loopback, the clinic's private ranges). By default a
request may only reach **public** addresses: the host is resolved, every address it resolves to
is checked, and the connection is made to a checked address (pinned: TLS SNI and the Host header
still name the host). Redirects are never followed. `JOURNEYS_OUTBOUND_ALLOW` lists the CIDRs and
host names that are allowed anyway (on-premise EHR endpoints).

Failures are described without saying what answered, so the error texts (timeline events, webhook
delivery records, API errors) cannot be used to scan ports: an address that is not allowed, or
"the request failed" for every network-level failure (refused, reset, timeout, DNS).

Operator-configured endpoints (the Twilio API base, SMTP relays) do not go through this policy.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ADDRESS_NOT_ALLOWED = "the address is not allowed (internal addresses need JOURNEYS_OUTBOUND_ALLOW)"
REQUEST_FAILED = "the request failed"

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


class AddressNotAllowed(httpx.TransportError):
    """The host is, or resolves to, an address the outbound policy refuses (nothing was sent)."""

    def __init__(self) -> None:
        super().__init__(ADDRESS_NOT_ALLOWED)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 IPv6 address."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IPAddress) -> bool:
    """True for globally routable unicast addresses: not loopback, link-local, private, unique-local,
    shared (CGNAT), multicast, reserved, unspecified or documentation. An IPv4-mapped or NAT64
    address is judged by the IPv4 address inside it, a 6to4 one by both; Teredo is refused."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None:
            return False
        inner = _embedded_ipv4(ip)
        if inner is not None and (ip.ipv4_mapped is not None or ip in _NAT64):
            return is_public(inner)
        if inner is not None and not is_public(inner):
            return False
    return bool(
        ip.is_global
        and not (
            ip.is_loopback
            or ip.is_link_local
            or ip.is_private
            or ip.is_multicast
            or ip.is_reserved
            or ip.is_unspecified
            or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
        )
    )


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


@dataclass(frozen=True)
class OutboundPolicy:
    """Public addresses, plus the allow-listed networks and host names."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, text: str | None) -> OutboundPolicy:
        """`text` is a comma- (or space-) separated list of CIDRs, IP addresses and host names.
        Raises ValueError naming every entry that is none of those."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        bad: list[str] = []
        for raw in re.split(r"[,\s]+", text or ""):
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = _normal_host(entry)
            if _HOSTNAME.match(name) and not name.replace(".", "").isdigit():
                hosts.add(name)
            else:
                bad.append(entry)
        if bad:
            raise ValueError(
                f"not a CIDR, an IP address or a host name: {', '.join(repr(b) for b in bad)} "
                "(use e.g. 10.0.0.0/8,127.0.0.1/32,ehr.local)"
            )
        return cls(tuple(networks), frozenset(hosts))

    def allows_address(self, ip: IPAddress) -> bool:
        candidates = [ip]
        inner = _embedded_ipv4(ip)
        if inner is not None:
            candidates.append(inner)
        if any(c in net for c in candidates for net in self.networks if c.version == net.version):
            return True
        return is_public(ip)

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for `host`, every one checked. Raises AddressNotAllowed when
        any of them is not allowed, httpcore.ConnectError when the host does not resolve."""
        name = _normal_host(host)
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise httpcore.ConnectError(REQUEST_FAILED) from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise httpcore.ConnectError(REQUEST_FAILED)
        if name in self.hosts:
            return addresses
        for text in addresses:
            if not self.allows_address(ipaddress.ip_address(text.split("%", 1)[0])):
                raise AddressNotAllowed()
        return addresses

    def check_url(self, url: str) -> None:
        """Raise AddressNotAllowed when `url`'s host resolves to an address that is not allowed
        (a host that does not resolve passes: the request itself will fail)."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError, TypeError):
            return
        host = parsed.host
        if not host:
            return
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            self.resolve(host, port)
        except httpcore.ConnectError:
            return


class _CheckedBackend(httpcore.NetworkBackend):
    """Resolves and checks the host, then connects to a checked address (never by name again)."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        last: Exception = httpcore.ConnectError(REQUEST_FAILED)
        for address in self.policy.resolve(host, port):
            try:
                return self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise AddressNotAllowed()

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class CheckedTransport(httpx.HTTPTransport):
    """httpx's transport with every connection going through the outbound policy. Environment
    proxies (HTTP_PROXY, …) are not used: the policy checks the address actually connected to."""

    def __init__(self, policy: OutboundPolicy) -> None:
        # Not HTTPTransport.__init__: it would build (and load certificates for) a pool we replace.
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_CheckedBackend(policy),
        )


_SSL: list[ssl.SSLContext] = []


def _ssl_context() -> ssl.SSLContext:
    """One verifying SSL context per process (building one loads the CA bundle)."""
    if not _SSL:
        _SSL.append(httpx.create_ssl_context())
    return _SSL[0]


def client(policy: OutboundPolicy, timeout: float) -> httpx.Client:
    """An httpx client for tenant-chosen URLs: checked connections, no redirects, no env proxies."""
    return httpx.Client(
        timeout=timeout, follow_redirects=False, trust_env=False, transport=CheckedTransport(policy)
    )


def failure_text(exc: BaseException) -> str:
    """The error text for a failed outbound request: whether the address was refused, else one
    generic text (no exception names, no hint of what answered or how)."""
    return ADDRESS_NOT_ALLOWED if isinstance(exc, AddressNotAllowed) else REQUEST_FAILED


def mask_url(url: str) -> str:
    """`url` as it may be shown (API answers, CLI output): credentials in it masked — the
    user:password before the host, and the values of query parameters (API keys often ride
    there) — the scheme, host, port, path and parameter names kept."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = ("***:***@" if ":" in userinfo else "***@") + hostport
    query = "&".join(
        f"{item.partition('=')[0]}=***" if "=" in item else "***" for item in parts.query.split("&") if item
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
