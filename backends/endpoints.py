"""Decide whether a backend endpoint URL is safe for the server to fetch.

Registry URLs are fetched by the admin, the workers and every router, so they are an SSRF
surface: a URL must be plain http(s), carry no credentials, and every address its host
resolves to must sit inside the networks the operator allows. Cloud metadata addresses and
the "any" address are refused whatever the operator allows, including their IPv4-mapped and
NAT64 spellings. Numeric hosts must be canonical dotted-decimal: `2130706433`, `0177.0.0.1`
and `127.1` are spellings that libraries disagree on, so they are refused outright.
"""

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

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
    """The URL may not be used as a backend endpoint; the message says why."""


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


def resolve(host: str, port: int) -> list[IPAddress]:
    """Resolve a host name to every address it has."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeEndpoint(f"host '{host}' does not resolve") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def check_endpoint_url(url: str, allowed_networks: Iterable[str], *, resolve_hosts: bool) -> None:
    """Raise UnsafeEndpoint with a readable reason unless the URL is a safe backend endpoint."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeEndpoint(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeEndpoint("must start with http:// or https://")
    if not parts.hostname:
        raise UnsafeEndpoint("must include a host")
    if "@" in parts.netloc:
        raise UnsafeEndpoint("must not contain credentials")
    if parts.query or parts.fragment:
        raise UnsafeEndpoint("must not contain a query string or fragment")
    networks = list(allowed_networks)
    address = literal_address(parts.hostname)
    if address is not None:
        check_address(address, networks)
        return
    if not resolve_hosts:
        return
    default_port = 443 if parts.scheme == "https" else 80
    for resolved in resolve(parts.hostname, port or default_port):
        check_address(resolved, networks)
