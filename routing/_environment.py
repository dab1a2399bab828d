"""The router's settings read from the environment: used at the edge only (get_llm_router()).

Everything here is also an ``LLMRouter`` constructor argument; a library caller that builds
its own router passes them directly and the environment is never read.

- ``ATHENA_ALLOWED_BACKEND_NETWORKS``: comma-separated CIDRs backend endpoints may resolve
  to, checked again at every connection (default: loopback and the private LAN ranges, the
  admin's default too).
- ``ATHENA_MAX_ANSWER_BYTES``, ``ATHENA_MAX_LINE_BYTES``: the caps on one upstream answer
  and on one line of a streamed answer.
- ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY`` (or lower case): read from the
  process environment by httpx's own reader, as httpx and curl read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from routing._addresses import DEFAULT_ALLOWED_NETWORKS
from routing._backends._base import DEFAULT_MAX_ANSWER_BYTES, DEFAULT_MAX_LINE_BYTES
from routing._compat_httpx import environment_proxies
from routing._exceptions import InvalidRequest

__all__ = ["router_options_from_environment"]


def router_options_from_environment(env: Mapping[str, str]) -> dict[str, Any]:
    """Return the LLMRouter keyword arguments the environment sets; a bad value raises."""
    networks = env.get("ATHENA_ALLOWED_BACKEND_NETWORKS")
    allowed = (
        list(DEFAULT_ALLOWED_NETWORKS)
        if networks is None
        else [n.strip() for n in networks.split(",") if n.strip()]
    )
    return {
        "allowed_networks": allowed,
        "max_answer_bytes": _positive_int(env, "ATHENA_MAX_ANSWER_BYTES", DEFAULT_MAX_ANSWER_BYTES),
        "max_line_bytes": _positive_int(env, "ATHENA_MAX_LINE_BYTES", DEFAULT_MAX_LINE_BYTES),
        "proxies": environment_proxies(),
    }


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise InvalidRequest(f"{name} must be a positive whole number of bytes, not {raw!r}")
    return value
