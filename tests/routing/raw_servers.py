"""Raw asyncio servers on 127.0.0.1 that answer with exactly the bytes a test gives them."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

OLLAMA_ANSWER = json.dumps(
    {"model": "up", "response": "hi", "done": True, "done_reason": "stop", "eval_count": 1}
).encode()


class RawServer:
    """An asyncio server on 127.0.0.1 running ``handler`` per connection, counting them."""

    def __init__(
        self, handler: Handler, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        self.handler = handler
        self.host = host
        self.tls = tls
        self.connections = 0
        self.closed_by_client = 0  # connections whose client hung up (EOF while reading)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            self.closed_by_client += 1
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.tls)
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def answering(*responses: bytes, then_close: bool = False) -> Handler:
    """A handler that answers successive requests on one connection with ``responses``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in responses:
            await read_request(reader)
            writer.write(response)
            await writer.drain()
        if not then_close:
            await read_request(reader)  # wait for the client to hang up

    return handler


def ok(body: bytes = b"ok") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
