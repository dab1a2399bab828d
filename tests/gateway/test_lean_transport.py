"""The gateway's HTTP/1.1 transport against raw servers that do awkward but legal things."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from athena_admin.gateway.transport import LeanTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


async def test_a_keep_alive_connection_the_server_closed_while_idle_is_retried_fresh():
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # says keep-alive (HTTP/1.1 default), then hangs up anyway

    server, url = await _serve(handler)
    async with server, httpx.AsyncClient(transport=LeanTransport()) as client:
        for _ in range(3):
            response = await client.post(url + "/x", json={"a": 1})
            assert response.text == "ok"
            await asyncio.sleep(0.05)
    assert connections == 3


async def test_it_reuses_a_connection_and_reads_chunked_and_close_delimited_bodies():
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"5\r\nHello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n")
        await _read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil close")
        await writer.drain()
        writer.close()

    server, url = await _serve(handler)
    async with server, httpx.AsyncClient(transport=LeanTransport()) as client:
        async with client.stream("POST", url + "/a", content=b"x") as response:
            assert [chunk async for chunk in response.aiter_raw()] == [b"Hello", b", world"]
        assert (await client.get(url + "/b")).text == "until close"
    assert connections == 1


async def test_it_raises_httpxs_errors_for_refused_timed_out_and_cut_answers():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
        await writer.drain()
        writer.close()

    slow_server, slow_url = await _serve(silent)
    cut_server, cut_url = await _serve(cut)
    async with slow_server, cut_server, httpx.AsyncClient(transport=LeanTransport()) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(slow_url, timeout=0.2)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(cut_url)
        slow_server.close()
        with pytest.raises(httpx.ConnectError):
            await client.get("http://127.0.0.1:9/")
