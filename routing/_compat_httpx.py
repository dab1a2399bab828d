"""The one place routing reads a private part of httpx; checked at import, fails loudly.

``environment_proxies()`` is httpx's own reading of ``HTTP_PROXY``, ``HTTPS_PROXY``,
``ALL_PROXY`` and ``NO_PROXY`` (``httpx._utils.get_environment_proxies``, what an
``httpx.AsyncClient(trust_env=True)`` uses), so the router honours the proxy variables
exactly as httpx and curl do. httpx has no public function for it, and ignores the
environment's proxies when given its own transport, as the router's client is.

``replace_pool()`` swaps the httpcore connection pool an ``httpx.AsyncHTTPTransport`` built
for one of the caller's (``transport._pool``): httpx has no public way to give its transport
another httpcore network backend, which the probes need to connect only to checked addresses
(backends/probes.py).

An httpx outside ``SUPPORTED`` or without these attributes makes the import raise ImportError
naming what changed, instead of the router quietly ignoring proxies or probes connecting
unchecked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

__all__ = ["SUPPORTED", "check", "environment_proxies", "replace_pool"]

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
    # Read from the constructor's code, not an instance: building a transport at import would
    # cost an SSL context (milliseconds) on every `import routing`.
    if "_pool" not in module.AsyncHTTPTransport.__init__.__code__.co_names:
        raise ImportError(
            f"httpx {version}'s AsyncHTTPTransport has no _pool; "
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


def replace_pool(transport: httpx.AsyncHTTPTransport, pool: Any) -> None:
    """Make the transport send through the given httpcore connection pool."""
    transport._pool = pool
