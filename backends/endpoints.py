"""Decide whether a backend endpoint URL is safe for the server to fetch.

Registry URLs are fetched by the admin, the workers and every router, so they are an SSRF
surface: a URL must be plain http(s), carry no credentials, and every address its host
resolves to must sit inside the networks the operator allows. Cloud metadata addresses and
the "any" address are refused whatever the operator allows, including their IPv4-mapped and
NAT64 spellings. Numeric hosts must be canonical dotted-decimal: `2130706433`, `0177.0.0.1`
and `127.1` are spellings that libraries disagree on, so they are refused outright.

The URL is refused unless every character is one RFC 3986 allows in a URI (section 2:
unreserved, reserved and `%`). `urlsplit` silently drops CR, LF and tab (WHATWG), so
`http://h/p\r\nX: y` would pass a check on its parts and then break every client that
sends it; and a host must be an IP literal or an ASCII DNS name (RFC 1123 labels; IDNs in
their `xn--` form), so a look-alike such as `1２7.0.0.1` or `ｌocalhost` is refused, not
left to each library's own normalisation.
"""

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

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
# RFC 3986 section 2: unreserved / reserved / "%" (pct-encoded). Nothing else, no spaces.
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
# RFC 1123 host names, with "_" allowed (container and service names use it).
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_DNS_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
# host [":" port], the host an IP literal in brackets (RFC 3986 3.2.2, with RFC 6874's zone)
# or a name: nothing before or after them (urlsplit ignores what follows "]").
_NETLOC = re.compile(r"(\[[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9._~-]+)?\]|[^:@\[\]]+)(?::\d{1,5})?")
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
