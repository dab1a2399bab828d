"""The router's HTTP client: one per event loop, over the lean transport, with no cookies."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpx

from routing._exceptions import InvalidRequest
from routing._transport import LeanTransport

__all__ = ["build_client", "checked_networks"]


def build_client(
    *,
    limits: httpx.Limits,
    connect_timeout: float,
    transport: httpx.AsyncBaseTransport | None,
    allowed_networks: tuple[str, ...] | None,
    proxies: Mapping[str, str | None] | None,
) -> httpx.AsyncClient:
    """Make the client one event loop's calls share (``transport`` replaces the lean one)."""
    return _CookielessClient(
        # httpx applies limits only to its own transport: the lean one is given them.
        limits=limits,
        # Every call passes its own timeout; this only guards a call that forgot.
        timeout=httpx.Timeout(60.0, connect=connect_timeout, pool=connect_timeout),
        # The environment is read at the edge (get_llm_router() passes ``proxies``).
        trust_env=False,
        transport=transport or LeanTransport(limits=limits, allowed_networks=allowed_networks),
        mounts=_proxy_mounts(proxies, limits),
    )


class _NoCookieJar(CookieJar):
    """A cookie jar that never holds a cookie, whatever is put in it."""

    def set_cookie(self, cookie: Cookie) -> None:
        pass


class _NoCookies(httpx.Cookies):
    """Cookies that are neither stored from responses nor sent with requests."""

    def __init__(self) -> None:
        super().__init__(_NoCookieJar())

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set_cookie_header(self, request: httpx.Request) -> None:
        pass


class _CookielessClient(httpx.AsyncClient):
    """An httpx client that neither keeps nor sends cookies.

    Why: backends are LAN servers speaking JSON APIs that never use cookies, yet httpx hands
    every response to ``http.cookiejar`` (wrapping it in a urllib Request and an email
    Message to look for Set-Cookie), about 10 us per call. A cookie a backend did set would
    only leak from one caller's call into every other's on this shared client.
    """

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("the router's client keeps no cookies")


_NO_COOKIES = _NoCookies()


def checked_networks(allowed: Sequence[str] | None) -> tuple[str, ...] | None:
    """Validate the allowed networks (CIDR strings) once, when the router is made."""
    if allowed is None:
        return None
    if isinstance(allowed, str):
        raise InvalidRequest("allowed_networks must be a list of CIDRs, not one string")
    for network in allowed:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise InvalidRequest(f"allowed_networks: {network!r} is not a network") from None
    return tuple(allowed)


def _proxy_mounts(
    proxies: Mapping[str, str | None] | None, limits: httpx.Limits
) -> dict[str, httpx.AsyncBaseTransport | None]:
    """httpx mounts for the proxies: URL pattern -> httpx's transport through that proxy.

    Patterns are httpx's (``http://``, ``all://*.lan``); None means "connect directly",
    over the router's own transport. Proxied calls go through httpx's transport, which
    speaks the proxy protocols (the proxy, not the router, then connects to the backend).
    """
    mounts: dict[str, httpx.AsyncBaseTransport | None] = {}
    for pattern, proxy in (proxies or {}).items():
        mounts[pattern] = (
            None
            if proxy is None
            else httpx.AsyncHTTPTransport(proxy=proxy, limits=limits, trust_env=False)
        )
    return mounts
