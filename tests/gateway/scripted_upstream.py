"""A real upstream on 127.0.0.1 that answers every request with exactly the bytes a test sets.

The test upstreams (tests/upstreams) speak their protocols with knobs for known failures;
this one speaks whatever it is told: any status, headers and body, sent in the given chunks
(a streamed answer's lines, or one body), so property-based tests can feed the gateway any
shape or byte string an upstream might send.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from tests.upstreams import serve_in_thread


@dataclass
class Script:
    """The next answers: status, headers and body chunks (``reset()`` between tests)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    chunks: list[bytes] = field(default_factory=list)
    requests: int = 0  # how many requests it answered

    def reset(self) -> None:
        self.status = 200
        self.headers = {"content-type": "application/json"}
        self.chunks = []
        self.requests = 0


def scripted_app(script: Script):  # type: ignore[no-untyped-def]
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await Request(scope, receive).body()
        script.requests += 1
        chunks = list(script.chunks)

        async def body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        response: Response
        if len(chunks) <= 1:
            response = Response(b"".join(chunks), script.status, headers=script.headers)
        else:
            response = StreamingResponse(body(), script.status, headers=script.headers)
        await response(scope, receive, send)

    return app


@pytest.fixture(scope="session")
def script() -> Script:
    return Script()


@pytest.fixture(scope="session")
def scripted_url(script: Script) -> Iterator[str]:
    with serve_in_thread(scripted_app(script)) as server:
        yield server.url


@pytest.fixture(autouse=True)
def _reset_script(script: Script) -> None:
    script.reset()
