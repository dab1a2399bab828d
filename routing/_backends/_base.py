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
from routing._transport import CHECK_ADDRESS
from routing._types import GenerationRequest, StreamEvent, Target
from routing.logs import HOPS_HEADER, REQUEST_ID_HEADER, get_hops, get_request_id

__all__ = [
    "DEFAULT_MAX_ANSWER_BYTES",
    "DEFAULT_MAX_LINE_BYTES",
    "Backend",
    "ProbeResult",
    "drain",
    "failed_probe",
    "status_probe_failure",
    "http_errors",
    "iter_lines",
    "raise_for_status",
    "read_answer",
    "request_headers",
]

# The most bytes one upstream answer may have, streamed or not, and the longest line of a
# stream. Why: an upstream's answer is held in memory (whole, when not streamed; a line at a
# time, when streamed), so a broken or hostile upstream could otherwise exhaust the process.
# Generous: a 32k-token answer is under 10 MiB even as SSE events; Ollama's final line
# carries the context's token ids (about 1 MiB at 128k tokens).
DEFAULT_MAX_ANSWER_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024

_MAX_ERROR_BODY = 2000
# The most of an error answer's body read to find the backend's message.
_MAX_ERROR_READ = 64 * 1024
# Every request asks for an uncompressed answer: the caps above count the bytes that are
# held, which a compressed body would multiply (and LAN backends gain nothing from it).
_IDENTITY = "identity"
_PLAIN_HEADERS = {"Accept-Encoding": _IDENTITY}
# Backend endpoints come from the registry: the router's transport checks their addresses
# against the allowed networks when it connects (see routing._transport.CHECK_ADDRESS).
CHECKED = {CHECK_ADDRESS: True}
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

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        connect_timeout: float = 5.0,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self._client = client
        self._connect_timeout = connect_timeout
        self.max_answer_bytes = max_answer_bytes
        self.max_line_bytes = max_line_bytes
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

    def post(
        self, url: httpx.URL, body: Any, timeout: httpx.Timeout
    ) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
        """Send a generation request; the answer's body is read by the caller (capped)."""
        return self._client.stream(
            "POST",
            url,
            json=body,
            headers=request_headers(),
            timeout=timeout,
            extensions=CHECKED,
        )

    async def get_json(self, url: str, timeout: float) -> tuple[int, Any]:
        """GET url: (status, its JSON body, or None for any status but 200), body capped."""
        async with self._client.stream(
            "GET", url, headers=_PLAIN_HEADERS, timeout=timeout, extensions=CHECKED
        ) as response:
            if response.status_code != 200:
                return response.status_code, None
            raw = await read_answer(response, None, self.max_answer_bytes)
        return 200, json.loads(raw)

    def lines(self, response: httpx.Response, target: Target) -> AsyncIterator[str]:
        """The streamed answer's lines, within this backend's caps."""
        return iter_lines(
            response, target, max_line=self.max_line_bytes, max_answer=self.max_answer_bytes
        )


def request_headers() -> dict[str, str]:
    """Headers every generation call carries: identity encoding, the caller's request id.

    The id comes from the ``routing.logs`` contextvar (the gateway sets it per request), so
    a backend's log lines can be matched with the caller's.
    """
    rid = get_request_id()
    hops = get_hops()
    if hops is not None:  # a gateway's call: one more hop (its loop detection, docs/gateway.md)
        headers = {"Accept-Encoding": _IDENTITY, HOPS_HEADER: str(hops + 1)}
        if rid:
            headers[REQUEST_ID_HEADER] = rid
        return headers
    return {"Accept-Encoding": _IDENTITY, REQUEST_ID_HEADER: rid} if rid else _PLAIN_HEADERS


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
            raise UpstreamProtocolError(f"broken answer: {exc}", target=target) from exc
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


def _check_plain(response: httpx.Response, target: Target | None) -> None:
    encoding = response.headers.get("content-encoding")
    if encoding is not None and encoding.strip().lower() not in ("", _IDENTITY):
        raise UpstreamProtocolError(
            f"compressed answer (Content-Encoding: {encoding[:40]}) though identity was asked",
            target=target,
        )


def _too_long(what: str, limit: int, setting: str, target: Target | None) -> UpstreamProtocolError:
    return UpstreamProtocolError(f"{what} longer than {limit} bytes ({setting})", target=target)


async def read_answer(response: httpx.Response, target: Target | None, limit: int) -> bytes:
    """Read a whole answer body, refusing one over limit bytes before holding more than that."""
    _check_plain(response, target)
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_long("answer", limit, "max_answer_bytes", target)
    parts: list[bytes] = []
    size = 0
    async for data in response.aiter_raw():
        size += len(data)
        if size > limit:
            raise _too_long("answer", limit, "max_answer_bytes", target)
        parts.append(data)
    return b"".join(parts)


async def iter_lines(
    response: httpx.Response,
    target: Target | None,
    *,
    max_line: int = DEFAULT_MAX_LINE_BYTES,
    max_answer: int = DEFAULT_MAX_ANSWER_BYTES,
) -> AsyncIterator[str]:
    """Yield the body's lines (ended by \\n, \\r\\n or \\r, as SSE allows) without their ends.

    Why not ``response.aiter_lines()``: it runs two more generator layers and an incremental
    decoder per chunk, on the path every token takes. Splitting bytes first and decoding whole
    lines gives the same text (UTF-8, bad bytes replaced, as httpx does), and never splits at
    the Unicode line separators (U+0085, U+2028) that may occur unescaped inside a JSON string.
    A \\r\\n split across two reads yields one extra empty line, which both protocols ignore.

    Linear in the body's size: the unfinished line's pieces are kept in a list and joined
    once, when a read brings its end (re-joining them per read was quadratic: 200 MiB without
    a line break cost a minute of CPU). A line over ``max_line`` bytes or a body over
    ``max_answer`` bytes is an UpstreamProtocolError.
    """
    _check_plain(response, target)
    pending: list[bytes] = []  # the unfinished line, in pieces
    pending_size = 0
    total = 0
    async for data in response.aiter_raw():
        total += len(data)
        if total > max_answer:
            raise _too_long("answer", max_answer, "max_answer_bytes", target)
        # Only this read can hold the end of the pending line: find its last line break.
        end = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if end < 0:
            pending.append(data)
            pending_size += len(data)
            if pending_size > max_line:
                raise _too_long("a line of the answer", max_line, "max_line_bytes", target)
            continue
        if pending:
            pending.append(data[: end + 1])
            block = b"".join(pending)
        else:
            block = data[: end + 1] if end + 1 < len(data) else data
        rest = data[end + 1 :]
        pending = [rest] if rest else []
        pending_size = len(rest)
        for line in block.splitlines():
            if len(line) > max_line:
                raise _too_long("a line of the answer", max_line, "max_line_bytes", target)
            yield line.decode("utf-8", "replace")
        if pending_size > max_line:
            raise _too_long("a line of the answer", max_line, "max_line_bytes", target)
    if pending:
        yield b"".join(pending).decode("utf-8", "replace")


async def drain(lines: AsyncIterator[str]) -> None:
    """Read a stream's body to its end once its final chunk has arrived.

    Why: leaving an HTTP/1.1 body unread makes the transport (lean or httpcore) close the
    connection instead of pooling it, so every streamed call paid a fresh TCP connect (most of
    the router's streaming overhead). The body's end follows the final chunk at once; a
    server that sends more after it, stalls or breaks only loses its connection: the answer
    is already complete.
    """
    with contextlib.suppress(httpx.HTTPError, UpstreamError, TimeoutError):
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for line in lines:
                if line:
                    return


async def raise_for_status(response: httpx.Response, target: Target) -> None:
    """Raise UpstreamStatusError with the backend's message for any status >= 400."""
    if response.status_code < 400:
        return
    parts: list[bytes] = []
    size = 0
    with http_errors(target):
        # Enough of the body to find the backend's message; the rest is never read (the
        # connection is then closed, not reused).
        async for data in response.aiter_raw():
            parts.append(data)
            size += len(data)
            if size >= _MAX_ERROR_READ:
                break
    body = b"".join(parts)[:_MAX_ERROR_READ]
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
