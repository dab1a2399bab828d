"""The one place routing reads a private part of httpx; checked at import, fails loudly.

``environment_proxies()`` is httpx's own reading of ``HTTP_PROXY``, ``HTTPS_PROXY``,
``ALL_PROXY`` and ``NO_PROXY`` (``httpx._utils.get_environment_proxies``, what an
``httpx.AsyncClient(trust_env=True)`` uses), so the router honours the proxy variables
exactly as httpx and curl do. httpx has no public function for it, and ignores the
environment's proxies when given its own transport, as the router's client is.

An httpx outside ``SUPPORTED`` or without the attribute makes ``import routing._router``
raise ImportError naming what changed, instead of the router quietly ignoring proxies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

__all__ = ["SUPPORTED", "check", "environment_proxies"]

# The httpx releases whose private attributes below were read and tested (major, minor).
SUPPORTED = ((0, 28),)


def check(module: Any, version: str) -> Callable[[], dict[str, str | None]]:
    """Return httpx's proxy reader, or raise ImportError if this httpx is not one we checked."""
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        major_minor = ()
    if major_minor not in SUPPORTED:
        raise ImportError(
            f"routing reads httpx internals checked only for httpx "
            f"{', '.join('.'.join(map(str, v)) for v in SUPPORTED)}; found {version}: "
            "check routing/_compat_httpx.py against it and add it to SUPPORTED"
        )
    reader = getattr(getattr(module, "_utils", None), "get_environment_proxies", None)
    if not callable(reader):
        raise ImportError(
            f"httpx {version} has no _utils.get_environment_proxies(); "
            "routing/_compat_httpx.py needs updating"
        )
    return reader  # type: ignore[no-any-return]


_get_environment_proxies = check(httpx, httpx.__version__)


def environment_proxies() -> dict[str, str | None]:
    """Return the proxy variables as URL patterns: proxy URL, or None for "go direct".

    Patterns are httpx's mount keys (``http://``, ``all://*.lan``, ``all://10.0.0.5``).
    Empty when no proxy variable is set.
    """
    return dict(_get_environment_proxies())
