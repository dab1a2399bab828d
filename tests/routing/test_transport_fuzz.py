"""Property: whatever bytes an upstream sends, the caller gets an answer or a routing error, soon.

A raw server on 127.0.0.1 sends hypothesis' bytes (near-HTTP answers with every framing, and
plain noise) and closes the connection. Through the transport alone the outcome is a
response read to its end or one of httpx's protocol errors; through the router it is a
result or a RoutingError naming a protocol or status failure. Never a hang, never another
exception type.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing import AllTargetsFailed, RoutingError, UpstreamStatusError
from routing._transport import LeanTransport
from tests.routing.conftest import target
from tests.routing.raw_servers import RawServer, read_request

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_LINE_ENDS = st.sampled_from([b"\r\n", b"\n", b"\r", b""])
_HEADERS = st.sampled_from(
    [
        b"Content-Length: 0",
        b"Content-Length: 5",
        b"Content-Length: 999999999999",
        b"Content-Length: -1",
        b"Content-Length: 5, 6",
        b"Transfer-Encoding: chunked",
        b"Transfer-Encoding: gzip",
        b"Transfer-Encoding: gzip, chunked",
        b"Connection: close",
        b"Connection: keep-alive",
        b"Content-Encoding: gzip",
        b"Content-Type: application/x-ndjson",
        b"X: \x00\x7f\xff",
        b" folded",
        b"NoColon",
    ]
)
_CHUNKS = st.lists(
    st.one_of(
        st.binary(max_size=30).map(lambda b: b"%x\r\n%s\r\n" % (len(b), b)),
        st.sampled_from([b"0\r\n\r\n", b"FFFFFFFFFFFF\r\n", b"zz\r\n", b"5;x=y\r\nab", b"\r\n"]),
    ),
    max_size=5,
)
_OLLAMA_LINES = st.lists(
    st.sampled_from(
        [
            b'{"response": "hi", "done": false}\n',
            b'{"response": "hi", "done": true, "eval_count": 1}\n',
            b'{"error": "boom"}\n',
            b"[1, 2]\n",
            b"not json\n",
            b'{"message": {"content": "x"}, "done": true}',
        ]
    ),
    max_size=4,
).map(b"".join)


_SSE_LINES = st.lists(
    st.sampled_from(
        [
            b'data: {"choices": [{"text": "hi"}]}\n\n',
            b'data: {"choices": [{"message": {"content": "hi"}}]}\n',
            b'data: {"choices": [], "usage": {"completion_tokens": 1}}\n\n',
            b"data: [DONE]\n\n",
            b": keep-alive\n\n",
            b'data: {"error": {"message": "boom"}}\n\n',
            b"data: nope\n",
            b'{"choices": [{"text": "hi", "finish_reason": "stop"}]}',
        ]
    ),
    max_size=4,
).map(b"".join)


@st.composite
def near_http(draw: st.DrawFn) -> bytes:
    """An answer shaped like HTTP/1.x, with each part drawn from valid and broken variants."""
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1x", b""]))
    status = draw(
        st.sampled_from([b"200", b"100", b"204", b"304", b"404", b"500", b"999", b"2x0", b""])
    )
    head = version + b" " + status + b" OK" + draw(_LINE_ENDS)
    for header in draw(st.lists(_HEADERS, max_size=4)):
        head += header + draw(_LINE_ENDS)
    head += draw(_LINE_ENDS)
    body = draw(
        st.one_of(_OLLAMA_LINES, _SSE_LINES, _CHUNKS.map(b"".join), st.binary(max_size=200))
    )
    return head + body


ANSWERS = st.one_of(near_http(), st.binary(max_size=300))


class Upstream:
    """A raw server answering every request with ``answer``, then closing the connection."""

    def __init__(self) -> None:
        self.answer = b""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(self.answer)
        await writer.drain()


@pytest.fixture
async def upstream():
    state = Upstream()
    async with RawServer(state.handle) as url:
        yield state, url


@FUZZ
@given(answer=ANSWERS)
async def test_the_transport_reads_any_answer_or_raises_a_protocol_error(upstream, answer):
    state, url = upstream
    state.answer = answer
    async with httpx.AsyncClient(transport=LeanTransport()) as client:
        try:
            async with asyncio.timeout(5):
                response = await client.get(url, timeout=2)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return
    assert 200 <= response.status_code <= 999


@FUZZ
@given(answer=ANSWERS, stream=st.booleans(), kind=st.sampled_from(["ollama", "openai"]))
async def test_the_router_answers_or_raises_a_routing_error_whatever_the_upstream_sends(
    upstream, make_router, admin_state, answer, stream, kind
):
    state, url = upstream
    state.answer = answer
    model = f"fuzz-{kind}"  # one model per kind: the router caches each route
    admin_state.set_route(model, target(kind, url, "up", timeout_seconds=2))
    router = make_router(breaker_threshold=10**9)
    try:
        async with asyncio.timeout(5):
            if stream:
                texts = [t async for t in router.stream(model=model, prompt="hi")]
                assert all(isinstance(t, str) for t in texts)
            else:
                result = await router.generate(model=model, prompt="hi")
                assert isinstance(result["response"], str)
    except AllTargetsFailed as exc:
        # The server always answered something: never a connect error or a timeout.
        assert [f.kind for f in exc.failures] in (["protocol"], ["http_5xx"], ["http_429"])
    except UpstreamStatusError as exc:
        assert exc.status_code is not None and 400 <= exc.status_code < 500
    except RoutingError:
        pass  # e.g. StreamInterrupted: text came, then the answer broke
