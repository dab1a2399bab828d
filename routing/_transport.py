"""The router's HTTP/1.1 transport: httpx's interface, httptools' parser, a cheap pool.

Why not httpx's own transport (httpcore): its pool checks every pooled connection on every
request (a poll() syscall per idle connection), so with the 64+ keep-alive connections a
busy process holds its cost grows with concurrency: at c=64 a call over it costs 5x the CPU
of one over this transport (``bench/router_bench.py``, the CPU/call "direct" and "lean"
columns; figures in docs/benchmarks.md). This transport keeps idle connections per origin in
a LIFO stack and checks only the one it takes.

What it does not do by hand: parse. Answers are parsed by httptools (llhttp, Node's parser,
the one uvicorn uses); anything llhttp refuses is ``httpx.RemoteProtocolError``. What it
adds on top, and why:

- Retries: a request is sent again (once, on a fresh connection) only if it went out on a
  reused connection, the connection closed before a single byte of the answer, and the
  method is idempotent (RFC 9110 section 9.2.2). A POST is never retried: its bytes may have
  reached the upstream, which may be running the generation (RFC 9112 section 9.3.1).
- Bounded buffering: the socket is read 64 KiB at a time and each read's body bytes are
  handed on before the next read, whatever chunk size the upstream announces; a response
  head longer than 64 KiB is a protocol error.
- Address checks: a request marked with the ``CHECK_ADDRESS`` extension (the router's calls
  to backend endpoints) resolves the host once, checks every address against the allowed
  networks (``routing._addresses``) and connects to a checked address, so a DNS answer that
  changed since the entry was saved (DNS rebinding) is a connect error, not a connection.
- http:// and https:// (TLS by asyncio, certificates checked with httpx's SSL context).
  Proxies are not its business: the router mounts httpx's transport for proxied URLs.

It honours ``httpx.Limits`` as httpx's transport does: ``max_connections`` caps the
connections open at once (a request beyond it waits up to its pool timeout, then fails with
``httpx.PoolTimeout``), ``max_keepalive_connections`` caps the idle ones kept,
``keepalive_expiry`` closes those idle for longer. It raises only httpx's exceptions.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httptools
import httpx

from routing._addresses import UnsafeEndpoint, resolve_checked

__all__ = ["CHECK_ADDRESS", "LeanTransport"]

# Request extension: check the connection's address against the allowed networks.
CHECK_ADDRESS = "routing.check_address"

# The longest response head accepted, and the most bytes read from the socket at once (also
# the StreamReader's limit: it stops reading from the socket past twice that).
_MAX_HEAD = 64 * 1024
_READ_SIZE = 64 * 1024
# RFC 9110 section 9.2.2.
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
_FORBIDDEN_IN_HEADERS = (b"\r", b"\n", b"\0")
# Any address, less the ones never allowed: what a transport without allowed networks checks.
_ANY_NETWORK = ("0.0.0.0/0", "::/0")

# (scheme, host, port, whether the address was checked): a connection opened without the
# check is never handed to a request that asks for it.
Origin = tuple[str, str, int, bool]


class _NoAnswer(Exception):
    """The connection closed (or failed) before a single byte of the answer arrived."""


class _Answer:
    """One response as httptools parses it; the parser calls the ``on_*`` methods.

    Body bytes are collected per fed piece and taken by the body's reader before the next
    read, so what is held is at most one read (64 KiB) whatever the upstream's framing.
    """

    __slots__ = (
        "parser",
        "status",
        "headers",
        "pieces",
        "head_done",
        "complete",
        "interim",
        "framed",
        "keep_alive",
        "trailing",
        "version",
    )

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.pieces: list[bytes] = []
        self.head_done = False
        self.complete = False
        self.interim = False
        # Whether the head framed the body (Content-Length or Transfer-Encoding); without
        # either, the body runs until the server closes the connection (RFC 9112 6.3).
        self.framed = False
        self.keep_alive = False
        self.trailing = False  # bytes came after the answer: the connection is not reused
        self.version = b"HTTP/1.1"

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            self.trailing = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        self.headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length" or lower == b"transfer-encoding":
            self.framed = True

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        if status < 200:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows.
            self.interim = True
            self.headers = []
            self.framed = False
            return
        self.status = status
        self.version = b"HTTP/" + self.parser.get_http_version().encode()
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        if not self.complete:
            self.pieces.append(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if not self.complete:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Parse the next bytes from the socket; malformed HTTP is RemoteProtocolError."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise httpx.RemoteProtocolError("the upstream switched protocols unasked") from None
        except httptools.HttpParserError as exc:
            if self.complete:  # garbage after a whole answer: it stands, the connection not
                self.trailing = True
                return
            raise httpx.RemoteProtocolError(f"malformed HTTP answer: {exc}") from None

    def take_pieces(self) -> list[bytes]:
        pieces, self.pieces = self.pieces, []
        return pieces


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
        answer: _Answer,
        read_timeout: float | None,
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._connection: _Connection | None = connection
        self._answer = answer
        self._timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        answer = self._answer
        reader = connection.reader
        timeout = self._timeout
        loop = asyncio.get_running_loop()
        # The read timeout bounds the wait for the next bytes, not the whole body. Why one
        # timer per body, re-armed before each read, instead of an asyncio.timeout() per read:
        # a streamed answer is read in dozens of pieces and that context was most of the cost
        # of each. The timer is disarmed before every yield, so a consumer that holds the
        # body between pieces (longer than the timeout, even) is never cancelled by it.
        try:
            async with asyncio.timeout(None) as timer:
                while True:
                    for piece in answer.take_pieces():
                        yield piece
                    if answer.complete:
                        break
                    if timeout is not None:
                        timer.reschedule(loop.time() + timeout)
                    data = await reader.read(_READ_SIZE)
                    timer.reschedule(None)
                    if not data:
                        if answer.framed:
                            raise httpx.RemoteProtocolError(
                                "the upstream closed the connection mid-answer"
                            )
                        answer.complete = True  # a body delimited by the connection's close
                        answer.keep_alive = False
                        break
                    answer.feed(data)
        except TimeoutError:
            self._drop()
            raise httpx.ReadTimeout("timed out reading the response body") from None
        except OSError as exc:
            self._drop()
            raise httpx.ReadError(f"reading the response body failed: {exc!r}") from None
        except BaseException:
            # A protocol error, or the consumer went away (GeneratorExit, cancellation):
            # either way the connection is mid-body.
            self._drop()
            raise
        self._release()

    def _release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            answer = self._answer
            if answer.keep_alive and not answer.trailing:
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


class LeanTransport(httpx.AsyncBaseTransport):
    """Pooled HTTP/1.1 within ``limits``; see the module docstring.

    ``allowed_networks``: the networks a request marked ``CHECK_ADDRESS`` may connect to
    (CIDR strings); None allows any address except those never allowed (metadata, "any").
    ``ssl_context``: for https://, default httpx's (certifi's certificates, names checked).
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits | None = None,
        allowed_networks: Iterable[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        limits = limits or httpx.Limits()
        self._max_open = limits.max_connections
        self._max_idle = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry
        self._allowed = tuple(_ANY_NETWORK if allowed_networks is None else allowed_networks)
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._idle_count = 0
        self._open = 0  # connections open or being opened, idle ones included
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._ssl_context = ssl_context
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
                    f"no connection to {origin[1]}:{origin[2]} came free in time: all "
                    f"{self._max_open} allowed (max_connections) are in use"
                ) from None
            raise

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port, checked = origin
        self._open += 1  # reserved before the await, so concurrent requests see the cap
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await self._open_stream(scheme, host, port, checked)
        except BaseException as exc:
            self._connection_closed()
            if isinstance(exc, TimeoutError):
                raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
            if isinstance(exc, UnsafeEndpoint):
                raise httpx.ConnectError(f"refused: {exc}") from None
            if isinstance(exc, OSError):
                raise httpx.ConnectError(str(exc) or type(exc).__name__) from None
            raise
        return _Connection(self, reader, writer)

    async def _open_stream(
        self, scheme: str, host: str, port: int, checked: bool
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        tls: dict[str, Any] = {}
        if scheme == "https":
            # The TCP connection may go to a checked address; TLS still checks the name.
            tls = {"ssl": self._tls_context(), "server_hostname": host}
        if not checked:
            return await asyncio.open_connection(host, port, limit=_READ_SIZE, **tls)
        addresses = await resolve_checked(host, port, self._allowed)
        error: OSError | None = None
        for address in addresses:  # in the resolver's order, as open_connection does
            try:
                return await asyncio.open_connection(str(address), port, limit=_READ_SIZE, **tls)
            except OSError as exc:
                error = exc
        assert error is not None
        raise error

    def _tls_context(self) -> ssl.SSLContext:
        # Made on first use: building it costs milliseconds that a router calling only
        # http:// backends never needs. trust_env=False: certificates come from certifi.
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context(trust_env=False)
        return self._ssl_context

    # -- one request -----------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"the router speaks http and https, not {url.scheme}")
        if request.method == "HEAD":
            # Whether a response has a body depends on the request for HEAD alone, which
            # httptools cannot be told; the router never sends one.
            raise httpx.UnsupportedProtocol("the router's transport does not send HEAD")
        if self._closed:
            raise httpx.ConnectError("the transport was closed")
        checked = bool(request.extensions.get(CHECK_ADDRESS))
        port = url.port or (443 if url.scheme == "https" else 80)
        origin = (url.scheme, url.host, port, checked)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
        head = _request_head(request, body)
        connection, reused = await self._acquire(origin, timeouts)
        try:
            return await self._exchange(origin, connection, head, body, timeouts)
        except _NoAnswer:
            if not (reused and request.method in _IDEMPOTENT):
                raise httpx.RemoteProtocolError(
                    "the upstream closed the connection without answering"
                ) from None
        # A kept-alive connection the server had closed: once more, on a fresh one.
        connection, _ = await self._acquire(origin, timeouts, fresh=True)
        try:
            return await self._exchange(origin, connection, head, body, timeouts)
        except _NoAnswer:
            raise httpx.RemoteProtocolError(
                "the upstream closed the connection without answering"
            ) from None

    async def _exchange(
        self,
        origin: Origin,
        connection: _Connection,
        head: bytes,
        body: bytes,
        timeouts: dict[str, Any],
    ) -> httpx.Response:
        """Send the request on the connection and read the response head."""
        try:
            await _send(connection, head, body, timeouts.get("write"))
            answer = await _read_head(connection.reader, timeouts.get("read"))
        except BaseException:
            connection.close()
            raise
        stream = _Body(self, origin, connection, answer, timeouts.get("read"))
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=stream,
            extensions={"http_version": answer.version},
        )

    async def aclose(self) -> None:
        self._closed = True
        for stack in self._idle.values():
            while stack:
                stack.pop().close()
        self._idle.clear()
        self._idle_count = 0


async def _send(connection: _Connection, head: bytes, body: bytes, timeout: float | None) -> None:
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
        raise _NoAnswer from None
    except OSError as exc:
        raise httpx.WriteError(f"sending the request failed: {exc!r}") from None


async def _read_head(reader: asyncio.StreamReader, timeout: float | None) -> _Answer:
    """Read until the (final, non-1xx) response head is parsed; body bytes stay in the answer."""
    answer = _Answer()
    received = 0
    try:
        async with asyncio.timeout(timeout):
            while not answer.head_done:
                data = await reader.read(_READ_SIZE)
                if not data:
                    if not received:
                        raise _NoAnswer
                    raise httpx.RemoteProtocolError("the upstream closed mid-way through the head")
                received += len(data)
                answer.feed(data)
                if not answer.head_done and received > _MAX_HEAD:
                    raise httpx.RemoteProtocolError(f"response head longer than {_MAX_HEAD} bytes")
    except TimeoutError:
        raise httpx.ReadTimeout("timed out waiting for the response") from None
    except ConnectionError:
        if not received:
            raise _NoAnswer from None
        raise httpx.ReadError("the connection failed mid-way through the head") from None
    except OSError as exc:
        raise httpx.ReadError(f"reading the response failed: {exc!r}") from None
    return answer


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
    joined = b"".join(lines)
    if any(c in joined for c in _FORBIDDEN_IN_HEADERS):
        # A header value with a line break would smuggle a header (or a request) upstream.
        raise httpx.LocalProtocolError("a request header contains CR, LF or NUL")
    return b"\r\n".join(lines) + b"\r\n\r\n"
