"""A lean HTTP/1.1 transport for the router's httpx client (plain http:// upstreams).

Why: httpcore's pool checks every pooled connection on every request (a poll() syscall per
idle connection to see whether it was closed), so with the 64+ keep-alive connections a busy
process holds, its cost grows with concurrency and caps one process near 250 requests/s on
a 2-core machine. This transport keeps idle connections per origin in a LIFO stack and
checks only the one it takes. It speaks HTTP/1.1 (RFC 9112) with Content-Length, chunked or
close-delimited bodies, which is what Ollama, mlx_server and OpenAI-compatible servers send;
https:// goes to httpx's own transport. It raises httpx's exceptions, so routing maps them
as it maps httpcore's.

It honours the same ``httpx.Limits`` as httpx's transport: ``max_connections`` caps the
connections open at once (a request beyond it waits for one, up to the request's pool
timeout, then fails with ``httpx.PoolTimeout``), ``max_keepalive_connections`` caps the idle
ones kept, ``keepalive_expiry`` closes those idle for longer.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httpx

__all__ = ["LeanTransport"]

# The longest response head (status line and headers) or chunk-size line accepted; also the
# StreamReader's buffer limit, so a server cannot make us buffer much more than this.
_MAX_HEAD = 64 * 1024
_READ_SIZE = 65536
# Chunk sizes are hex; 16 digits already exceed any body a server could send.
_MAX_CHUNK_DIGITS = 16
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_WHITESPACE = b" \t"

Origin = tuple[str, int]


class _StaleConnection(Exception):
    """A reused connection turned out closed before any answer: safe to retry once."""


class _Connection:
    __slots__ = ("reader", "writer", "idle_since", "closed", "_transport")

    def __init__(
        self, transport: LeanTransport, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._transport = transport
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.closed = False

    def usable(self) -> bool:
        """Whether the server has not hung up on it (as far as the event loop has seen)."""
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        """Close the socket and give its slot back; safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        self._transport._connection_closed()


class _Body(httpx.AsyncByteStream):
    """The response body, read from the connection as the caller iterates."""

    def __init__(
        self,
        transport: LeanTransport,
        origin: Origin,
        connection: _Connection,
        length: int | None,
        chunked: bool,
        keep_alive: bool,
        read_timeout: float | None,
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._connection: _Connection | None = connection
        self._length = length
        self._chunked = chunked
        # A close-delimited body ends with the connection: it cannot be reused.
        self._keep_alive = keep_alive and (chunked or length is not None)
        self._timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        reader = connection.reader
        timeout = self._timeout
        loop = asyncio.get_running_loop()
        # The read timeout bounds the wait for the next bytes, not the whole body. Why one
        # timer per body, re-armed before each read, instead of an asyncio.timeout() per read:
        # a streamed answer is read in dozens of pieces and that context was most of the cost
        # of each. The timer is disarmed before every yield, so a consumer that holds the
        # body between pieces (longer than the timeout, even) is never cancelled by it.
        # The body is read by the task that started reading it, as httpx's streams are.
        try:
            async with asyncio.timeout(None) as timer:
                if self._chunked:
                    while True:  # RFC 9112 section 7.1
                        if timeout is not None:
                            timer.reschedule(loop.time() + timeout)
                        size = _chunk_size(await reader.readuntil(b"\r\n"))
                        if size == 0:
                            # Trailer fields, if any, end with an empty line.
                            while await reader.readuntil(b"\r\n") != b"\r\n":
                                pass
                            break
                        chunk = await reader.readexactly(size + 2)
                        timer.reschedule(None)
                        if chunk[-2:] != b"\r\n":
                            raise httpx.RemoteProtocolError("chunk data not followed by CRLF")
                        yield chunk[:-2]
                elif self._length is not None:
                    remaining = self._length
                    while remaining > 0:
                        if timeout is not None:
                            timer.reschedule(loop.time() + timeout)
                        data = await reader.read(min(remaining, _READ_SIZE))
                        timer.reschedule(None)
                        if not data:
                            raise asyncio.IncompleteReadError(b"", remaining)
                        remaining -= len(data)
                        yield data
                else:  # no length: the body runs until the server closes the connection
                    while True:
                        if timeout is not None:
                            timer.reschedule(loop.time() + timeout)
                        data = await reader.read(_READ_SIZE)
                        timer.reschedule(None)
                        if not data:
                            break
                        yield data
        except TimeoutError:
            self._drop()
            raise httpx.ReadTimeout("timed out reading the response body") from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self._drop()
            raise httpx.RemoteProtocolError(f"response body cut short: {exc!r}") from None
        except OSError as exc:
            self._drop()
            raise httpx.ReadError(f"reading the response body failed: {exc!r}") from None
        except BaseException:
            # A framing error (httpx.RemoteProtocolError), or the consumer went away
            # (GeneratorExit, cancellation): either way the connection is mid-body.
            self._drop()
            raise
        self._release()

    def _release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            if self._keep_alive:
                self._transport._put(self._origin, connection)
            else:
                connection.close()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    async def aclose(self) -> None:
        # Closed before the end (a client that stopped reading): the connection is mid-
        # response and cannot be reused. After a full read this is a no-op.
        self._drop()


def _chunk_size(line: bytes) -> int:
    """Parse ``chunk-size [; chunk-ext] CRLF``; anything else is a protocol error."""
    digits = line[:-2].split(b";", 1)[0].rstrip(_WHITESPACE)
    if not digits or len(digits) > _MAX_CHUNK_DIGITS or not _HEX_DIGITS.issuperset(digits):
        raise httpx.RemoteProtocolError(f"malformed chunk size: {line[:80]!r}")
    return int(digits, 16)


class LeanTransport(httpx.AsyncBaseTransport):
    """Pooled HTTP/1.1 for http:// origins within ``limits``; see the module docstring."""

    def __init__(self, *, limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits()
        self._limits = limits
        self._max_open = limits.max_connections
        self._max_idle = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._idle_count = 0
        self._open = 0  # connections open or being opened, idle ones included
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._fallback: httpx.AsyncHTTPTransport | None = None
        self._closed = False

    # -- the pool --------------------------------------------------------------------------

    def _take(self, origin: Origin) -> _Connection | None:
        """Pop the origin's most recently used idle connection that is still usable."""
        stack = self._idle.get(origin)
        if not stack:
            return None
        now = time.monotonic()
        expiry = self._expiry
        while stack:
            connection = stack.pop()  # LIFO: the most recently used is the likeliest alive
            self._idle_count -= 1
            if connection.usable() and (expiry is None or now - connection.idle_since < expiry):
                return connection
            connection.close()
        return None

    def _put(self, origin: Origin, connection: _Connection) -> None:
        """Keep a connection whose response was read to its end, or close it."""
        full = self._max_idle is not None and self._idle_count >= self._max_idle
        if self._closed or full or not connection.usable():
            connection.close()
            return
        now = time.monotonic()
        connection.idle_since = now
        stack = self._idle.get(origin)
        if stack is None:
            stack = self._idle[origin] = deque()
        self._close_expired(stack, now)
        stack.append(connection)
        self._idle_count += 1
        self._wake_one()  # a waiter for this origin can take it, any other can evict it

    def _close_expired(self, stack: deque[_Connection], now: float) -> None:
        # The oldest idle connections sit at the bottom of the stack, where _take rarely
        # reaches under steady load: expire them here so they do not linger past the limit.
        expiry = self._expiry
        if expiry is None:
            return
        while stack and now - stack[0].idle_since >= expiry:
            stack.popleft().close()
            self._idle_count -= 1

    def _evict_one_idle(self) -> bool:
        """Close the oldest idle connection of any origin to make room; False if none."""
        for stack in self._idle.values():
            if stack:
                stack.popleft().close()
                self._idle_count -= 1
                return True
        return False

    def _connection_closed(self) -> None:
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _acquire(
        self, origin: Origin, timeouts: dict[str, Any], *, fresh: bool = False
    ) -> tuple[_Connection, bool]:
        """Return (a connection to origin, whether it was reused), waiting while at the cap."""
        deadline: float | None = None
        waited = False
        while True:
            if not fresh:
                connection = self._take(origin)
                if connection is not None:
                    return connection, True
            if self._max_open is None or self._open < self._max_open or self._evict_one_idle():
                return await self._connect(origin, timeouts.get("connect")), False
            if not waited:
                waited = True
                pool_timeout = timeouts.get("pool")
                if pool_timeout is not None:
                    deadline = asyncio.get_running_loop().time() + pool_timeout
            # Woken when a connection is put back or closed; another request may still
            # take it first, so loop and look again (until the deadline).
            await self._wait_for_slot(origin, deadline)

    async def _wait_for_slot(self, origin: Origin, deadline: float | None) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._wake_one()  # woken as we gave up: pass the free slot on
            waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout(
                    f"no connection to {origin[0]}:{origin[1]} came free in time: all "
                    f"{self._max_open} allowed (max_connections) are in use"
                ) from None
            raise

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        self._open += 1  # reserved before the await, so concurrent requests see the cap
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    origin[0], origin[1], limit=_MAX_HEAD
                )
        except BaseException as exc:
            self._connection_closed()
            if isinstance(exc, TimeoutError):
                raise httpx.ConnectTimeout(
                    f"connecting to {origin[0]}:{origin[1]} timed out"
                ) from None
            if isinstance(exc, OSError):
                raise httpx.ConnectError(str(exc) or type(exc).__name__) from None
            raise
        return _Connection(self, reader, writer)

    # -- one request -----------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            return await self._https_transport().handle_async_request(request)
        if self._closed:
            raise httpx.ConnectError("the transport was closed")
        origin = (url.host, url.port or 80)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
        head = _request_head(request, body)
        connection, reused = await self._acquire(origin, timeouts)
        if reused:
            try:
                return await self._exchange(origin, connection, head, body, timeouts, request)
            except _StaleConnection:
                pass  # the server closed it while idle: once more on a fresh connection
            connection, _ = await self._acquire(origin, timeouts, fresh=True)
        try:
            return await self._exchange(origin, connection, head, body, timeouts, request)
        except _StaleConnection:
            raise httpx.RemoteProtocolError(
                "server closed the connection without answering"
            ) from None

    async def _exchange(
        self,
        origin: Origin,
        connection: _Connection,
        head: bytes,
        body: bytes,
        timeouts: dict[str, Any],
        request: httpx.Request,
    ) -> httpx.Response:
        """Send the request on the connection and read the response head."""
        try:
            await self._send(connection, head, body, timeouts.get("write"))
            raw_head = await _read_head(connection.reader, timeouts.get("read"))
            status, headers, length, chunked, keep_alive = _parse_head(raw_head)
        except BaseException:
            connection.close()
            raise
        if status in (204, 304) or request.method == "HEAD":
            length, chunked = 0, False
        stream = _Body(self, origin, connection, length, chunked, keep_alive, timeouts.get("read"))
        return httpx.Response(
            status, headers=headers, stream=stream, extensions={"http_version": b"HTTP/1.1"}
        )

    @staticmethod
    async def _send(
        connection: _Connection, head: bytes, body: bytes, timeout: float | None
    ) -> None:
        writer = connection.writer
        try:
            if len(body) < _READ_SIZE:
                writer.write(head + body)  # one send() for the usual small JSON body
            else:
                writer.write(head)
                writer.write(body)
            async with asyncio.timeout(timeout):
                await writer.drain()
        except TimeoutError:
            raise httpx.WriteTimeout("timed out sending the request") from None
        except ConnectionError:
            raise _StaleConnection from None
        except OSError as exc:
            raise httpx.WriteError(f"sending the request failed: {exc!r}") from None

    async def aclose(self) -> None:
        self._closed = True
        for stack in self._idle.values():
            while stack:
                stack.pop().close()
        self._idle.clear()
        self._idle_count = 0
        if self._fallback is not None:
            await self._fallback.aclose()

    def _https_transport(self) -> httpx.AsyncHTTPTransport:
        # Made on first use: building its SSL context costs milliseconds that a router
        # calling only http:// backends never needs. trust_env=False as the client has.
        if self._fallback is None:
            self._fallback = httpx.AsyncHTTPTransport(limits=self._limits, trust_env=False)
        return self._fallback


async def _read_head(reader: asyncio.StreamReader, timeout: float | None) -> bytes:
    """Read the response head, skipping interim (1xx) responses such as 100 Continue."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                raw_head = await reader.readuntil(b"\r\n\r\n")
                if not _is_interim(raw_head):
                    return raw_head
    except TimeoutError:
        raise httpx.ReadTimeout("timed out waiting for the response") from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _StaleConnection from None  # closed before a single byte: never answered
        raise httpx.RemoteProtocolError("response head cut short") from None
    except asyncio.LimitOverrunError:
        raise httpx.RemoteProtocolError(
            f"response head longer than {_MAX_HEAD} bytes or missing its blank line"
        ) from None
    except ConnectionError:
        raise _StaleConnection from None
    except OSError as exc:
        raise httpx.ReadError(f"reading the response failed: {exc!r}") from None


def _is_interim(raw_head: bytes) -> bool:
    # 1xx except 101 (which switches protocols and is never asked for here).
    return raw_head[9:10] == b"1" and raw_head[:5] == b"HTTP/" and raw_head[9:12] != b"101"


def _request_head(request: httpx.Request, body: bytes) -> bytes:
    """Render the request line and headers; the body is always sent with a Content-Length."""
    lines = [request.method.encode() + b" " + request.url.raw_path + b" HTTP/1.1"]
    has_host = False
    for name, value in request.headers.raw:
        lower = name.lower()
        if lower == b"content-length" or lower == b"transfer-encoding":
            continue
        if lower == b"host":
            has_host = True
        lines.append(name + b": " + value)
    if not has_host:
        lines.append(b"Host: " + request.url.netloc)
    if body or request.method in ("POST", "PUT", "PATCH"):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _parse_head(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], int | None, bool, bool]:
    """Parse a response head into (status, headers, length, chunked, keep_alive).

    Framing follows RFC 9112 section 6.3: chunked wins over Content-Length (and the
    connection is then not reused, as the message may be an attack); a response with
    neither runs until the server closes the connection.
    """
    lines = raw[:-4].split(b"\r\n")
    status, keep_alive = _parse_status_line(lines[0])
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    transfer_encoding: bytes | None = None
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[-1:] in _WHITESPACE or name[:1] in _WHITESPACE:
            raise httpx.RemoteProtocolError(f"malformed header line: {line[:80]!r}")
        value = value.strip(_WHITESPACE)
        headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length":
            length = _content_length(value, length)
        elif lower == b"transfer-encoding":
            transfer_encoding = value.lower()
        elif lower == b"connection":
            tokens = [token.strip(_WHITESPACE) for token in value.lower().split(b",")]
            if b"close" in tokens:
                keep_alive = False
            elif b"keep-alive" in tokens:
                keep_alive = True
    chunked = False
    if transfer_encoding is not None:
        # Only a final "chunked" frames the body; any other coding runs until close.
        chunked = transfer_encoding.rsplit(b",", 1)[-1].strip(_WHITESPACE) == b"chunked"
        if length is not None:
            keep_alive = False
        length = None
    return status, headers, length, chunked, keep_alive


def _parse_status_line(line: bytes) -> tuple[int, bool]:
    """Return (status code, whether the version keeps the connection alive by default)."""
    parts = line.split(b" ", 2)
    if (
        len(parts) < 2
        or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0")
        or len(parts[1]) != 3
        or not parts[1].isdigit()
    ):
        raise httpx.RemoteProtocolError(f"malformed status line: {line[:80]!r}")
    return int(parts[1]), parts[0] == b"HTTP/1.1"


def _content_length(value: bytes, previous: int | None) -> int:
    # RFC 9110 section 8.6: 1*DIGIT; repeated fields must agree. int() alone would accept
    # "-1", "+5", "1_0" and surrounding spaces.
    if not value.isdigit() or len(value) > 19:
        raise httpx.RemoteProtocolError(f"malformed Content-Length: {value[:80]!r}")
    length = int(value)
    if previous is not None and previous != length:
        raise httpx.RemoteProtocolError("conflicting Content-Length values")
    return length
