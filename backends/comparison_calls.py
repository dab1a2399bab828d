"""Timing one streamed call to one target, through `routing/`'s backend kinds.

No Django here: the comparison service (backends/comparisons.py) decides what to send and
stores what this measures. Calls go straight to the target (no router, no fallback, no
samples shipped to the admin): a comparison is not production traffic and must not show up
in the dashboards' figures.

Safety: the same connection rules as the probes (backends/probes.py): only addresses inside
ATHENA_ALLOWED_BACKEND_NETWORKS, checked when connecting; no redirects, no proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

import httpx

from backends.probes import CheckedNetwork, CheckedTransport
from routing import Finish, GenerationRequest, Target, TextDelta, UpstreamError, backend_class

__all__ = ["CallTiming", "CallSession", "decode_rate"]


@dataclass(frozen=True, slots=True)
class CallTiming:
    """What one call took; `error` is classified (as the probes store it), never a body."""

    ok: bool
    latency_ms: float
    ttft_ms: float | None = None
    decode_tokens_per_sec: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error_kind: str = ""
    error: str = ""
    status_code: int | None = None


def decode_rate(
    completion_tokens: int | None, first: float | None, last: float | None
) -> float | None:
    """Tokens per second after the first one: (tokens - 1) over the time from first to last text.

    Why not tokens over (latency - TTFT), as the router's samples do: the first token's time
    is already TTFT, so counting it again favours short answers. Measured at the client for
    every kind alike (not Ollama's own eval_duration), so all targets share one yardstick.
    None when there is nothing to divide: fewer than two tokens, or all text in one chunk.
    """
    if completion_tokens is None or completion_tokens < 2 or first is None or last is None:
        return None
    span = last - first
    return (completion_tokens - 1) / span if span > 0 else None


def _classified(exc: UpstreamError) -> str:
    code = exc.status_code
    if code is not None:
        return f"HTTP {code}"
    return {
        "connect": "cannot connect",
        "timeout": "timed out",
        "protocol": "malformed answer",
    }.get(exc.error_kind, "call failed")


class CallSession:
    """One connection pool for a whole comparison run; calls are made one at a time.

    A target's connection is kept alive between its calls, as a router's would be, so the
    figures show the backend and not TCP set-up.
    """

    def __init__(self, allowed_networks: Iterable[str], *, connect_timeout: float = 5.0) -> None:
        self._network = CheckedNetwork(allowed_networks)
        self._client = httpx.AsyncClient(
            transport=CheckedTransport(self._network, max_connections=16, keepalive=True),
            trust_env=False,
            follow_redirects=False,
        )
        self._connect_timeout = connect_timeout

    async def time_call(
        self, target: Target, request: GenerationRequest, *, limit: float
    ) -> CallTiming | None:
        """Send one request and time it; None when `limit` seconds ran out first (no figure)."""
        cls = backend_class(target.backend_type)
        if cls is None:
            return CallTiming(False, 0.0, error_kind="protocol", error="unknown backend type")
        backend = cls(self._client, connect_timeout=self._connect_timeout)
        started = time.perf_counter()
        first: float | None = None
        last: float | None = None
        finish: Finish | None = None
        try:
            async with asyncio.timeout(limit):
                async with contextlib.aclosing(backend.events(target, request)) as events:
                    async for event in events:
                        if type(event) is TextDelta:
                            if event.text:
                                last = time.perf_counter()
                                first = first or last
                        elif type(event) is Finish:
                            finish = event
        except TimeoutError:
            return None
        except UpstreamError as exc:
            ms = (time.perf_counter() - started) * 1000
            refused = self._network.refused.get(httpx.URL(target.endpoint_url).host)
            error = f"refused: {refused}"[:200] if refused else _classified(exc)
            return CallTiming(
                False, ms, error_kind=exc.error_kind, error=error, status_code=exc.status_code
            )
        ms = (time.perf_counter() - started) * 1000
        tokens = finish.completion_tokens if finish else None
        return CallTiming(
            True,
            ms,
            ttft_ms=None if first is None else (first - started) * 1000,
            decode_tokens_per_sec=decode_rate(tokens, first, last),
            prompt_tokens=finish.prompt_tokens if finish else None,
            completion_tokens=tokens,
            status_code=200,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> CallSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
