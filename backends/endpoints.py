"""Decide whether a backend endpoint URL is safe for the server to fetch.

Registry URLs are fetched by the admin, the workers and every router, so they are an SSRF
surface: a URL must be plain http(s), carry no credentials, and every address its host
resolves to must pass the address rules of ``routing._addresses`` (allowed networks; cloud
metadata and the "any" address always refused; canonical numeric hosts only). Those rules
live in routing because the router and the probes apply them again when they connect.
"""

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

# The address rules are routing's (the router re-checks them when it connects): one copy.
from routing._addresses import (
    ALWAYS_REFUSED,
    IPAddress,
    UnsafeEndpoint,
    check_address,
    embedded_ipv4,
    literal_address,
)

__all__ = [
    "ALWAYS_REFUSED",
    "IPAddress",
    "UnsafeEndpoint",
    "check_address",
    "check_endpoint_url",
    "embedded_ipv4",
    "literal_address",
    "resolve",
]


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
