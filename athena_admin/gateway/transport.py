"""A lean HTTP/1.1 transport for the router's httpx client (plain http:// upstreams).

Why: httpcore's pool checks every pooled connection on every request (a poll() syscall per
idle connection to see whether it was closed), so with the 64+ keep-alive connections a busy
gateway holds, its cost grows with concurrency and caps one process near 250 requests/s on
a 2-core machine. This transport keeps idle connections per origin in a LIFO stack and
checks only the one it takes. It speaks HTTP/1.1 with Content-Length or chunked bodies,
which is what Ollama, mlx_server and OpenAI-compatible servers send; https:// goes to
httpx's own transport. It raises httpx's exceptions, so routing maps them as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httpx

__all__ = ["LeanTransport"]

_MAX_HEAD = 64 * 1024


class _Connection:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float, expiry: float) -> bool:
        return (
            not self.reader.at_eof()
            and not self.writer.is_closing()
            and now - self.idle_since < expiry
        )

    def close(self) -> None:
        self.writer.close()


class _Body(httpx.AsyncByteStream):
    """The response body, read from the connection as the caller iterates."""

    def __init__(
        self,
        transport: LeanTransport,
        origin: tuple[str, int],
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
        self._keep_alive = keep_alive
        self._timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        reader = connection.reader
        timeout = self._timeout
        try:
            if self._chunked:
                while True:
                    async with asyncio.timeout(timeout):
                        line = await reader.readuntil(b"\r\n")
                        size = int(line.split(b";", 1)[0], 16)
                        if size == 0:
                            # Trailers (rare) end with an empty line.
                            while await reader.readuntil(b"\r\n") != b"\r\n":
                                pass
                            break
                        chunk = await reader.readexactly(size + 2)
                    yield chunk[:-2]
            elif self._length is not None:
                remaining = self._length
                while remaining > 0:
                    async with asyncio.timeout(timeout):
                        chunk = await reader.read(min(remaining, 65536))
                    if not chunk:
                        raise asyncio.IncompleteReadError(b"", remaining)
                    remaining -= len(chunk)
                    yield chunk
            else:  # no length: the body runs until the server closes the connection
                self._keep_alive = False
                while True:
                    async with asyncio.timeout(timeout):
                        chunk = await reader.read(65536)
                    if not chunk:
                        break
                    yield chunk
        except TimeoutError:
            self._drop()
            raise httpx.ReadTimeout("timed out reading the response body") from None
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            self._drop()
            raise httpx.RemoteProtocolError(f"response body cut short: {exc!r}") from None
        except BaseException:
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
        # response and cannot be reused.
        self._drop()


class LeanTransport(httpx.AsyncBaseTransport):
    """Pooled HTTP/1.1 for http:// origins; see the module docstring."""

    def __init__(self, *, max_idle_per_origin: int = 256, keepalive_expiry: float = 30.0) -> None:
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}
        self._max_idle = max_idle_per_origin
        self._expiry = keepalive_expiry
        self._fallback = httpx.AsyncHTTPTransport()

    def _take(self, origin: tuple[str, int]) -> _Connection | None:
        stack = self._idle.get(origin)
        if not stack:
            return None
        now = time.monotonic()
        while stack:
            connection = stack.pop()  # LIFO: the most recently used is the likeliest alive
            if connection.usable(now, self._expiry):
                return connection
            connection.close()
        return None

    def _put(self, origin: tuple[str, int], connection: _Connection) -> None:
        stack = self._idle.get(origin)
        if stack is None:
            stack = self._idle[origin] = deque()
        if len(stack) >= self._max_idle or connection.reader.at_eof():
            connection.close()
            return
        connection.idle_since = time.monotonic()
        stack.append(connection)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            return await self._fallback.handle_async_request(request)
        origin = (url.host, url.port or 80)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
        head = self._head(request, body)
        reused = self._take(origin)
        if reused is not None:
            try:
                return await self._exchange(origin, reused, head, body, timeouts, request.method)
            except _StaleConnection:
                pass  # the server closed it while idle: once more on a fresh connection
        connection = await self._connect(origin, timeouts.get("connect"))
        try:
            return await self._exchange(origin, connection, head, body, timeouts, request.method)
        except _StaleConnection:
            raise httpx.RemoteProtocolError(
                "server closed the connection without answering"
            ) from None

    @staticmethod
    def _head(request: httpx.Request, body: bytes) -> bytes:
        target = request.url.raw_path
        lines = [request.method.encode() + b" " + target + b" HTTP/1.1"]
        has_host = False
        for name, value in request.headers.raw:
            lower = name.lower()
            if lower in (b"content-length", b"transfer-encoding"):
                continue
            if lower == b"host":
                has_host = True
            lines.append(name + b": " + value)
        if not has_host:
            lines.append(b"Host: " + request.url.netloc)
        if body or request.method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: " + str(len(body)).encode())
        return b"\r\n".join(lines) + b"\r\n\r\n"

    async def _connect(self, origin: tuple[str, int], timeout: float | None) -> _Connection:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    origin[0], origin[1], limit=_MAX_HEAD
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {origin[0]}:{origin[1]} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from None
        return _Connection(reader, writer)

    async def _exchange(
        self,
        origin: tuple[str, int],
        connection: _Connection,
        head: bytes,
        body: bytes,
        timeouts: dict[str, Any],
        method: str,
    ) -> httpx.Response:
        read_timeout = timeouts.get("read")
        reader = connection.reader
        try:
            connection.writer.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                connection.writer.write(body)
            async with asyncio.timeout(timeouts.get("write")):
                await connection.writer.drain()
            async with asyncio.timeout(read_timeout):
                raw_head = await reader.readuntil(b"\r\n\r\n")
                while raw_head.startswith(b"HTTP/1.1 1"):  # 100 Continue and friends
                    raw_head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            connection.close()
            raise httpx.ReadTimeout("timed out waiting for the response") from None
        except asyncio.IncompleteReadError as exc:
            connection.close()
            if not exc.partial:
                raise _StaleConnection from None
            raise httpx.RemoteProtocolError("response head cut short") from None
        except (ConnectionError, asyncio.LimitOverrunError) as exc:
            connection.close()
            if isinstance(exc, ConnectionError):
                raise _StaleConnection from None
            raise httpx.RemoteProtocolError(f"malformed response head: {exc!r}") from None
        except BaseException:
            connection.close()
            raise
        status, headers, length, chunked, keep_alive = _parse_head(raw_head)
        if status in (204, 304) or 100 <= status < 200 or method == "HEAD":
            length, chunked = 0, False
        stream = _Body(self, origin, connection, length, chunked, keep_alive, read_timeout)
        return httpx.Response(
            status, headers=headers, stream=stream, extensions={"http_version": b"HTTP/1.1"}
        )

    async def aclose(self) -> None:
        for stack in self._idle.values():
            for connection in stack:
                connection.close()
        self._idle.clear()
        with contextlib.suppress(Exception):
            await self._fallback.aclose()


class _StaleConnection(Exception):
    """A reused connection turned out closed before any answer: safe to retry once."""


def _parse_head(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], int | None, bool, bool]:
    lines = raw[:-4].split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    try:
        status = int(status_line[1])
    except (IndexError, ValueError):
        raise httpx.RemoteProtocolError(f"malformed status line: {lines[0][:80]!r}") from None
    keep_alive = status_line[0] == b"HTTP/1.1"
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise httpx.RemoteProtocolError(f"malformed header line: {line[:80]!r}")
        value = value.strip()
        headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length":
            length = int(value)
        elif lower == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif lower == b"connection":
            token = value.lower()
            if token == b"close":
                keep_alive = False
            elif token == b"keep-alive":
                keep_alive = True
    return status, headers, length, chunked, keep_alive
