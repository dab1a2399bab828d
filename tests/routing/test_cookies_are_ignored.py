"""The router's client keeps no cookies: a backend's Set-Cookie never comes back to it."""

from __future__ import annotations

import asyncio

from tests.routing.conftest import target
from tests.routing.raw_servers import OLLAMA_ANSWER, RawServer, read_request


async def test_a_backends_set_cookie_is_not_sent_back_on_the_next_call(make_router, admin_state):
    heads: list[bytes] = []

    async def sets_a_cookie(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            heads.append(await read_request(reader))
            writer.write(
                b"HTTP/1.1 200 OK\r\nSet-Cookie: session=abc123; Path=/\r\n"
                b"Content-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(OLLAMA_ANSWER), OLLAMA_ANSWER)
            )
            await writer.drain()

    async with RawServer(sets_a_cookie) as url:
        admin_state.set_route("m", target("ollama", url, "up"))
        router = make_router()
        for _ in range(2):
            assert (await router.generate(model="m", prompt="hi"))["response"] == "hi"
        async with router.stream(model="m", prompt="hi") as stream:
            assert [text async for text in stream] == ["hi"]

    assert len(heads) == 3
    assert all(b"cookie:" not in head.lower() for head in heads)
    assert len(router._session().client.cookies) == 0
