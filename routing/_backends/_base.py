"""The interface every backend kind implements, and the httpx-to-routing error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

import httpx

from routing._exceptions import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from routing._types import GenerationRequest, StreamEvent, Target
from routing.logs import HOPS_HEADER, REQUEST_ID_HEADER, get_hops, get_request_id

__all__ = [
    "Backend",
    "ProbeResult",
    "drain",
    "failed_probe",
    "status_probe_failure",
    "http_errors",
    "iter_lines",
    "raise_for_status",
    "request_headers",
]

_MAX_ERROR_BODY = 2000
_decode_json = json.JSONDecoder().decode
# How long to wait for a stream's body to end after its final chunk (see drain()).
_DRAIN_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One health probe of an endpoint: reachable or not, and the models it lists."""

    ok: bool
    latency_ms: float
    models: tuple[str, ...] = ()
    error: str | None = None
    error_kind: str | None = None
    # Models in memory, where the backend says (Ollama GET /api/ps, mlx_server /health
    # ``models_loaded``); None when it does not, which is not the same as "none loaded".
    loaded: tuple[str, ...] | None = None
    status_code: int | None = None
    version: str | None = None  # the server's own version, where it says (Ollama /api/version)


def status_probe_failure(started: float, status_code: int) -> ProbeResult:
    """A probe answered with a non-200 status: only the status is kept, never the body."""
    return ProbeResult(
        False,
        (time.perf_counter() - started) * 1000,
        error=f"HTTP {status_code}",
        error_kind="http_5xx" if status_code >= 500 else "http_4xx",
        status_code=status_code,
    )


def failed_probe(started: float, exc: Exception) -> ProbeResult:
    """A probe that could not reach the backend (UpstreamError) or could not read its answer."""
    ms = (time.perf_counter() - started) * 1000
    if isinstance(exc, UpstreamError):
        return ProbeResult(False, ms, error=str(exc), error_kind=exc.error_kind)
    return ProbeResult(False, ms, error=f"malformed answer: {exc}", error_kind="protocol")


class Backend(ABC):
    """A backend kind: renders a GenerationRequest in its wire format, parses the answer.

    ``events()`` yields zero or more TextDelta and then exactly one Finish, for streamed and
    non-streamed requests alike, so a gateway can re-render any backend in any protocol.
    It raises only UpstreamError subclasses. Subclasses set ``kind`` and register themselves
    with ``routing.register_backend``.
    """

    kind: ClassVar[str]
    protocol: ClassVar[str]

    def __init__(self, client: httpx.AsyncClient, *, connect_timeout: float = 5.0) -> None:
        self._client = client
        self._connect_timeout = connect_timeout
        self._timeouts: dict[float, httpx.Timeout] = {}
        self._urls: dict[str, httpx.URL] = {}

    @abstractmethod
    def events(
        self, target: Target, request: GenerationRequest
    ) -> AsyncGenerator[StreamEvent, None]:
        """Send the request to the target and yield its normalized events."""

    @abstractmethod
    async def probe(self, endpoint_url: str, *, timeout: float = 5.0) -> ProbeResult:
        """Check that the endpoint answers, cheaply (no generation)."""

    def timeout_for(self, target: Target) -> httpx.Timeout:
        """Return the target's timeout: ``timeout_seconds`` between bytes, a short connect."""
        t = self._timeouts.get(target.timeout_seconds)
        if t is None:
            secs = target.timeout_seconds
            connect = min(self._connect_timeout, secs)
            # pool: how long a call waits for a free connection under max_connections.
            t = httpx.Timeout(secs, connect=connect, pool=connect)
            self._timeouts[secs] = t
        return t

    def url_for(self, target: Target, path: str) -> httpx.URL:
        """Return the parsed URL of path on the target's endpoint (cached).

        Why: httpx parses and validates a str URL on every call; a parsed one is reused as
        is. The cache holds one entry per (endpoint, path) of the configured routes.
        """
        key = target.endpoint_url + path
        url = self._urls.get(key)
        if url is None:
            url = self._urls[key] = httpx.URL(key)
        return url

    def parse_json(self, raw: bytes | str, target: Target) -> Any:
        try:
            # A streamed line is a str: the decoder directly skips json.loads' type checks.
            return _decode_json(raw) if type(raw) is str else json.loads(raw)
        except ValueError as exc:
            snippet = raw[:80] if isinstance(raw, str) else raw[:80].decode("utf-8", "replace")
            raise UpstreamProtocolError(
                f"malformed JSON from backend: {snippet!r}", target=target
            ) from exc


def request_headers() -> dict[str, str] | None:
    """Headers every generation call carries: the caller's request id, when there is one.

    The id comes from the ``routing.logs`` contextvar (the gateway sets it per request), so
    a backend's log lines can be matched with the caller's.
    """
    rid = get_request_id()
    hops = get_hops()
    if hops is not None:  # a gateway's call: one more hop (its loop detection, docs/gateway.md)
        headers = {HOPS_HEADER: str(hops + 1)}
        if rid:
            headers[REQUEST_ID_HEADER] = rid
        return headers
    return {REQUEST_ID_HEADER: rid} if rid else None


class http_errors:  # lower case: used like the function it replaced, `with http_errors(t):`
    """Turn httpx's exceptions into routing's; nothing from httpx leaves the package.

    A class rather than a ``@contextmanager`` generator: this wraps every call, and entering
    and leaving a generator-based context manager costs several times more.
    """

    __slots__ = ("target",)

    def __init__(self, target: Target | None) -> None:
        self.target = target

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or not isinstance(exc, httpx.HTTPError):
            return  # no error, or one that is not httpx's (UpstreamError included): re-raised
        target = self.target
        if isinstance(exc, httpx.TimeoutException):
            # A pool timeout says why (every allowed connection busy); the others say little.
            detail = f": {exc}" if isinstance(exc, httpx.PoolTimeout) else ""
            raise UpstreamTimeout(
                f"timed out ({type(exc).__name__}){detail}", target=target
            ) from exc
        if isinstance(exc, httpx.ConnectError):
            raise UpstreamConnectError(f"cannot connect: {exc}", target=target) from exc
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.DecodingError)):
            raise UpstreamProtocolError(f"answer cut short: {exc}", target=target) from exc
        raise UpstreamConnectError(f"{type(exc).__name__}: {exc}", target=target) from exc


def error_message(body: bytes) -> str:
    """Extract the backend's own error text: Ollama ``{"error": str}``, OpenAI ``{"error": {"message"}}``."""
    text = body[:_MAX_ERROR_BODY].decode("utf-8", "replace")
    try:
        obj = json.loads(body)
    except ValueError:
        return text.strip() or "(empty body)"
    if isinstance(obj, dict):
        err = obj.get("error", obj.get("detail"))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return str(err)
    return text


async def iter_lines(response: httpx.Response) -> AsyncIterator[str]:
    """Yield the body's lines (ended by \\n, \\r\\n or \\r, as SSE allows) without their ends.

    Why not ``response.aiter_lines()``: it runs two more generator layers and an incremental
    decoder per chunk, on the path every token takes. Splitting bytes first and decoding whole
    lines gives the same text (UTF-8, bad bytes replaced, as httpx does), and never splits at
    the Unicode line separators (U+0085, U+2028) that may occur unescaped inside a JSON string.
    A \\r\\n split across two reads yields one extra empty line, which both protocols ignore.
    """
    partial = b""
    async for data in response.aiter_bytes():
        if partial:
            data = partial + data
        lines = data.splitlines()
        # The last piece is a whole line only when the read ended with a line break.
        partial = b"" if not lines or data.endswith((b"\n", b"\r")) else lines.pop()
        for line in lines:
            yield line.decode("utf-8", "replace")
    if partial:
        yield partial.decode("utf-8", "replace")


async def drain(lines: AsyncIterator[str]) -> None:
    """Read a stream's body to its end once its final chunk has arrived.

    Why: leaving an HTTP/1.1 body unread makes the transport (lean or httpcore) close the
    connection instead of pooling it, so every streamed call paid a fresh TCP connect (most of
    the router's streaming overhead). The body's end follows the final chunk at once; a
    server that sends more after it, stalls or breaks only loses its connection: the answer
    is already complete.
    """
    with contextlib.suppress(httpx.HTTPError, TimeoutError):
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for line in lines:
                if line:
                    return


async def raise_for_status(response: httpx.Response, target: Target) -> None:
    """Raise UpstreamStatusError with the backend's message for any status >= 400."""
    if response.status_code < 400:
        return
    with http_errors(target):
        body = await response.aread()
    raise UpstreamStatusError(
        response.status_code,
        error_message(body),
        target=target,
        retry_after=retry_after_seconds(response.headers.get("retry-after")),
    )


def retry_after_seconds(value: str | None) -> float | None:
    """Read Retry-After (RFC 9110 10.2.3): delay-seconds or an HTTP-date; None if neither."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), 86_400))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, min(when.timestamp() - time.time(), 86_400.0))
