"""Decide whether a backend endpoint URL is safe for the server to fetch.

Registry URLs are fetched by the admin, the workers and every router, so they are an SSRF
surface: a URL must be plain http(s), carry no credentials, and every address its host
resolves to must pass the address rules of ``routing._addresses`` (allowed networks; cloud
metadata and the "any" address always refused; canonical numeric hosts only). Those rules
live in routing because the router and the probes apply them again when they connect.

The URL is refused unless every character is one RFC 3986 allows in a URI (section 2:
unreserved, reserved and `%`). `urlsplit` silently drops CR, LF and tab (WHATWG), so
`http://h/p\\r\\nX: y` would pass a check on its parts and then break every client that
sends it; and a host must be an IP literal or an ASCII DNS name (RFC 1123 labels; IDNs in
their `xn--` form), so a look-alike such as `1２7.0.0.1` or `ｌocalhost` is refused, not
left to each library's own normalisation.
"""

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

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
    "parse_endpoint_url",
    "resolve",
]

# RFC 3986 section 2: unreserved / reserved / "%" (pct-encoded). Nothing else, no spaces.
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
# RFC 1123 host names, with "_" allowed (container and service names use it).
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_DNS_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
# host [":" port], the host an IP literal in brackets (RFC 3986 3.2.2, with RFC 6874's zone)
# or a name: nothing before or after them (urlsplit ignores what follows "]").
_NETLOC = re.compile(r"(\[[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9._~-]+)?\]|[^:@\[\]]+)(?::\d{1,5})?")


def resolve(host: str, port: int) -> list[IPAddress]:
    """Resolve a host name to every address it has."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeEndpoint(f"host '{host}' does not resolve") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def parse_endpoint_url(url: str) -> tuple[SplitResult, IPAddress | None]:
    """Check the URL's form (no addresses); return its parts and its IP literal, if any."""
    if not _URI_CHARACTERS.fullmatch(url):
        bad = next((c for c in url if not _URI_CHARACTERS.fullmatch(c)), "")
        raise UnsafeEndpoint(
            f"must contain only URL characters (RFC 3986), not {ascii(bad)}"
            if bad
            else "must not be empty"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        raise UnsafeEndpoint(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeEndpoint("must start with http:// or https://")
    if not parts.hostname:
        raise UnsafeEndpoint("must include a host")
    if "@" in parts.netloc:
        raise UnsafeEndpoint("must not contain credentials")
    if not _NETLOC.fullmatch(parts.netloc):
        raise UnsafeEndpoint(f"'{parts.netloc}' is not a host with an optional port")
    if parts.query or parts.fragment:
        raise UnsafeEndpoint("must not contain a query string or fragment")
    address = literal_address(parts.hostname)
    if address is None and (len(parts.hostname) > 253 or not _DNS_NAME.fullmatch(parts.hostname)):
        raise UnsafeEndpoint(f"host '{parts.hostname}' is not a valid host name")
    return parts, address


def check_endpoint_url(url: str, allowed_networks: Iterable[str], *, resolve_hosts: bool) -> None:
    """Raise UnsafeEndpoint with a readable reason unless the URL is a safe backend endpoint."""
    parts, address = parse_endpoint_url(url)
    networks = list(allowed_networks)
    if address is not None:
        check_address(address, networks)
        return
    if not resolve_hosts:
        return
    default_port = 443 if parts.scheme == "https" else 80
    assert parts.hostname is not None
    for resolved in resolve(parts.hostname, parts.port or default_port):
        check_address(resolved, networks)
