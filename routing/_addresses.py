"""Which network addresses a backend endpoint may be reached at: the one copy of the rules.

Registry URLs are fetched by the admin, the workers and every router, so they are an SSRF
surface. Every address a host resolves to must sit inside the networks the operator allows
(``ATHENA_ALLOWED_BACKEND_NETWORKS``, read at the edge: Django's settings, or
``get_llm_router()``). Cloud metadata addresses and the "any" address are refused whatever
the operator allows, including their IPv4-mapped and NAT64 spellings. Numeric hosts must be
canonical dotted-decimal: ``2130706433``, ``0177.0.0.1`` and ``127.1`` are spellings that
libraries disagree on, so they are refused outright.

The admin checks a URL when an entry is saved (``backends.endpoints``); the router and the
probes check again when they connect (``resolve_checked``), because a DNS answer can change
in between (DNS rebinding). Framework-free: routing never imports Django.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable

__all__ = [
    "ALWAYS_REFUSED",
    "DEFAULT_ALLOWED_NETWORKS",
    "IPAddress",
    "UnsafeEndpoint",
    "check_address",
    "embedded_ipv4",
    "literal_address",
    "resolve_checked",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Loopback and the private LAN ranges a home lab uses.
DEFAULT_ALLOWED_NETWORKS = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)

ALWAYS_REFUSED = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this host": reaches local services on many stacks
        "169.254.0.0/16",  # link-local, home of 169.254.169.254 (AWS, GCP, Azure metadata)
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "::/128",
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
    )
]
_NAT64 = [ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48")]
_CANONICAL_IPV4 = re.compile(
    r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$"
)
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|\d+)(\.(0x[0-9a-f]*|\d*))*$", re.IGNORECASE)


class UnsafeEndpoint(ValueError):
    """The URL or address may not be used as a backend endpoint; the message says why."""


def embedded_ipv4(address: IPAddress) -> IPAddress:
    """Return the IPv4 address hidden in an IPv4-mapped or NAT64 IPv6 address, else the address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if any(address in net for net in _NAT64):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def check_address(address: IPAddress, allowed_networks: Iterable[str]) -> None:
    """Raise UnsafeEndpoint unless the address is inside an allowed network and not refused."""
    candidates = {address, embedded_ipv4(address)}
    for candidate in candidates:
        if any(candidate in net for net in ALWAYS_REFUSED if net.version == candidate.version):
            raise UnsafeEndpoint(f"address {address} is never allowed (metadata or unspecified)")
    effective = embedded_ipv4(address)
    networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
    if not any(effective in net for net in networks if net.version == effective.version):
        raise UnsafeEndpoint(
            f"address {address} is outside the allowed networks (ATHENA_ALLOWED_BACKEND_NETWORKS)"
        )


def literal_address(host: str) -> IPAddress | None:
    """Parse a host that is an IP literal; refuse non-canonical numeric spellings."""
    if ":" in host:  # urlsplit strips the brackets of an IPv6 literal
        try:
            return ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise UnsafeEndpoint(f"'{host}' is not a valid IPv6 address") from None
    if _CANONICAL_IPV4.match(host):
        return ipaddress.IPv4Address(host)
    if _NUMERIC_HOST.match(host):
        raise UnsafeEndpoint(
            f"'{host}' is a non-standard IP spelling; write the address in dotted-decimal form"
        )
    return None


async def resolve_checked(host: str, port: int, allowed_networks: Iterable[str]) -> list[IPAddress]:
    """Resolve host once and return its addresses, each checked; raise UnsafeEndpoint if any fails.

    Connect to one of the returned addresses (never to the name again): a second look-up
    could answer differently. One refused address refuses the host, as at save time.
    """
    address = literal_address(host.strip("[]"))
    if address is not None:
        addresses = [address]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise UnsafeEndpoint(f"host '{host}' does not resolve") from None
        addresses = list(
            dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos)
        )
    allowed = list(allowed_networks)
    for a in addresses:
        check_address(a, allowed)
    return addresses
