"""Streamed calls read their body to the end, so they reuse one keep-alive connection."""

from collections.abc import Iterator

import pytest

from routing import GenerationRequest
from tests.routing.conftest import target
from tests.upstreams import Behavior, ollama_app, openai_app, serve_in_thread


class ConnectionCounter:
    """ASGI middleware noting the client address of each request: one per TCP connection."""

    def __init__(self, app) -> None:
        self.app = app
        self.peers: set[tuple[str, int]] = set()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.peers.add(tuple(scope["client"]))
        await self.app(scope, receive, send)


@pytest.fixture(params=["ollama", "openai"])
def counted(request) -> Iterator[tuple[str, str, ConnectionCounter]]:
    kind = request.param
    app = ConnectionCounter((ollama_app if kind == "ollama" else openai_app)(Behavior()))
    with serve_in_thread(app) as server:
        yield kind, server.url, app


async def test_twenty_streamed_calls_use_one_connection(make_router, admin_state, counted):
    kind, url, counter = counted
    admin_state.set_route("m", target(kind, url, "up"))
    router = make_router()
    await router.route("m")  # the admin look-up has its own connection, to another server
    for _ in range(20):
        stream = router.stream(model="m", prompt="hi")
        assert "".join([t async for t in stream]) == "Hello, world!"
    assert len(counter.peers) == 1


async def test_streamed_chats_through_events_use_one_connection(make_router, admin_state, counted):
    kind, url, counter = counted
    admin_state.set_route("m", target(kind, url, "up"))
    router = make_router()
    request = GenerationRequest.build(
        model="m", messages=[{"role": "user", "content": "x"}], stream=True
    )
    for _ in range(20):
        assert [type(e).__name__ async for e in router.events(request)][-1] == "Finish"
    assert len(counter.peers) == 1
