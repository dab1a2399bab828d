"""A stream's lines are parsed right however the network splits them between reads.

The upstream here writes its body in pieces with a pause between them, so each piece reaches
the router in its own read: JSON split mid-line and mid-character, and a CRLF split between
its CR and its LF.
"""

import asyncio
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.routing.conftest import target
from tests.upstreams import serve_in_thread

# "wörld": the two bytes of ö (c3 b6) are split between two reads.
OLLAMA_PIECES = (
    b'{"model":"up","created_at":"2024-07-22T20:47:51Z","message":{"role":"assistant","con',
    b'tent":"Hello"},"done":false}\n{"model":"up","created_at":"2024-07-22T20:47:51Z",'
    b'"message":{"role":"assistant","content":" w\xc3',
    b'\xb6rld"},"done":false}\r',
    b'\n{"model":"up","created_at":"2024-07-22T20:47:51Z","message":{"role":"assistant",'
    b'"content":""},"done_reason":"stop","done":true,"total_duration":5,"load_duration":1,'
    b'"prompt_eval_count":3,"prompt_eval_duration":1,"eval_count":2,"eval_duration":2}\r\n',
)


def _sse(delta: str, finish: str = "null") -> bytes:
    return (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"up",'
        b'"choices":[{"index":0,"delta":{"content":"' + delta.encode() + b'"},'
        b'"finish_reason":' + finish.encode() + b"}]}\r\n\r\n"
    )


_USAGE = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"up","choices":[],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\r\n\r\n'
)
_SSE = _sse("Hello") + _sse(" wörld") + _sse("", '"stop"') + _USAGE + b"data: [DONE]\r\n\r\n"
_CUTS = (
    _SSE.index(b"Hello") + 2,  # inside the JSON
    _SSE.index(b"\r\n") + 1,  # between CR and LF
    _SSE.index("ö".encode()) + 1,  # inside the UTF-8 of ö
    _SSE.index(b"\r\n\r\n", _SSE.index(b" w")) + 3,  # between the blank line's CR and LF
    _SSE.index(b"[DONE]") + 3,
)
OPENAI_PIECES = tuple(_SSE[a:b] for a, b in zip((0, *_CUTS), (*_CUTS, len(_SSE)), strict=True))


def _split_app() -> Starlette:
    def streamer(pieces: tuple[bytes, ...], media_type: str):
        async def endpoint(request: Request) -> StreamingResponse:
            await request.body()

            async def body():
                for piece in pieces:
                    yield piece
                    await asyncio.sleep(0.02)  # long enough for the router to read it alone

            return StreamingResponse(body(), media_type=media_type)

        return endpoint

    return Starlette(
        routes=[
            Route("/api/chat", streamer(OLLAMA_PIECES, "application/x-ndjson"), methods=["POST"]),
            Route(
                "/v1/chat/completions",
                streamer(OPENAI_PIECES, "text/event-stream"),
                methods=["POST"],
            ),
        ]
    )


@pytest.fixture(scope="module")
def split_url() -> Iterator[str]:
    with serve_in_thread(_split_app()) as server:
        yield server.url


@pytest.mark.parametrize("kind", ["ollama", "openai"])
async def test_lines_split_across_reads_are_parsed_whole(kind, make_router, admin_state, split_url):
    assert all(OPENAI_PIECES)  # each cut falls after the one before
    admin_state.set_route("m", target(kind, split_url, "up"))
    stream = make_router().stream_chat(model="m", messages=[{"role": "user", "content": "x"}])
    assert [t async for t in stream] == ["Hello", " wörld"]
    assert stream.result["done_reason"] == "stop"
    assert (stream.result["prompt_tokens"], stream.result["completion_tokens"]) == (3, 2)
