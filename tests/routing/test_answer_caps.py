"""Oversized upstream answers fail their target as a protocol error, in bounded memory and time.

Each upstream below would send 200 MiB (it stops when the router hangs up): a non-streamed
body, a chunk announced as FFFFFFFFFFFF bytes, a stream without a line break, a stream of
empty lines. Before the caps the router held all of it (764 MB for the gateway) and split
lines in quadratic time (a minute of CPU).
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc

import httpx
import pytest

from routing import AllTargetsFailed, LLMRouter, UpstreamProtocolError
from routing._backends._base import DEFAULT_MAX_ANSWER_BYTES, iter_lines
from tests.routing.conftest import target
from tests.routing.raw_servers import Handler, RawServer, read_request

MiB = 1024 * 1024
BLOCK = b"a" * MiB
# Lines with no text (so the router may still fall back), padded to keep the line count low.
EMPTY_LINES = (b'{"response": "", "done": false, "pad": "%s"}\n' % (b"p" * 1000)) * 1000


def sending(head: bytes, block: bytes, *, chunked: bool = False, total: int = 200 * MiB) -> Handler:
    """Answer every request with head, then block after block until total (or a hang-up)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(head)
            sent = 0
            while sent < total:
                writer.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
                await writer.drain()
                sent += len(block)

    return handler


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
HUGE = {
    "declared 200 MiB body": (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (200 * MiB),
        BLOCK,
        False,
        False,
        "max_answer_bytes",
    ),
    "chunked 200 MiB body": (CHUNKED, BLOCK, True, False, "max_answer_bytes"),
    "chunk size FFFFFFFFFFFF": (CHUNKED + b"FFFFFFFFFFFF\r\n", BLOCK, False, False, "max_answer"),
    "stream without a line break": (CHUNKED, BLOCK, True, True, "max_line_bytes"),
    "stream of empty lines": (CHUNKED, EMPTY_LINES, True, True, "max_answer_bytes"),
}


@pytest.mark.parametrize(
    ("head", "block", "chunked", "stream", "cap"), HUGE.values(), ids=HUGE.keys()
)
async def test_an_oversized_answer_is_a_protocol_error_in_bounded_memory_and_time(
    make_router, admin_state, ollama_url, head, block, chunked, stream, cap
):
    async with RawServer(sending(head, block, chunked=chunked)) as huge_url:
        admin_state.set_route("huge", target("ollama", huge_url, "up"))
        admin_state.set_route(
            "m", target("ollama", huge_url, "up"), target("ollama", ollama_url, "up")
        )
        router = make_router()  # the default caps
        call = router.stream if stream else router.generate

        tracemalloc.start()
        started = time.perf_counter()
        try:
            with pytest.raises(AllTargetsFailed) as failed:
                if stream:
                    async for _ in call(model="huge", prompt="hi"):
                        pass
                else:
                    await call(model="huge", prompt="hi")
            elapsed = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        # Falls back before the first byte to the client: the next target serves the call.
        if stream:
            texts = [t async for t in call(model="m", prompt="hi")]
            assert "".join(texts) == "Hello, world!"
        else:
            assert (await call(model="m", prompt="hi"))["fallback"] is True
    error = failed.value.failures[0].error
    assert isinstance(error, UpstreamProtocolError)
    assert cap in str(error)
    # Generous bounds, far under the 200 MiB sent: the cap (32 MiB) plus its join.
    assert peak < 2.5 * DEFAULT_MAX_ANSWER_BYTES
    assert elapsed < 30


async def test_the_caps_are_the_routers_to_set(make_router, admin_state):
    async with RawServer(sending(CHUNKED, b"x" * 4096, chunked=True)) as url:
        admin_state.set_route("huge", target("ollama", url, "up"))
        router = make_router(max_answer_bytes=64 * 1024, max_line_bytes=1024)
        with pytest.raises(AllTargetsFailed, match="longer than 65536 bytes"):
            await router.generate(model="huge", prompt="hi")
        with pytest.raises(AllTargetsFailed, match="longer than 1024 bytes"):
            async for _ in router.stream(model="huge", prompt="hi"):
                pass


@pytest.mark.parametrize("value", [0, -1])
def test_a_cap_that_is_not_positive_is_refused(value):
    with pytest.raises(ValueError, match="must be positive"):
        LLMRouter(None, max_answer_bytes=value)


async def test_lines_are_split_in_time_linear_in_the_body():
    # Many small reads of one long line: a fake response, since a real socket coalesces
    # small writes. Re-joining the unfinished line per read would copy ~40 GB here.
    pieces = 20_000

    async def body():
        for _ in range(pieces):
            yield b"x" * 1024
        yield b"\nend"

    response = httpx.Response(200, content=body())
    started = time.perf_counter()
    lines = [
        line async for line in iter_lines(response, None, max_line=64 * MiB, max_answer=64 * MiB)
    ]
    assert time.perf_counter() - started < 10
    assert [len(line) for line in lines] == [pieces * 1024, 3]


async def test_a_compressed_answer_is_refused_as_identity_was_asked(make_router, admin_state):
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        assert b"accept-encoding: identity" in request.lower()
        writer.write(answer)
        await writer.drain()

    async with RawServer(handler) as url:
        admin_state.set_route("gz", target("ollama", url, "up"))
        with pytest.raises(AllTargetsFailed, match="Content-Encoding: gzip"):
            await make_router().generate(model="gz", prompt="hi")


async def test_a_probe_answered_with_an_oversized_body_fails_as_a_protocol_error(make_router):
    async with RawServer(sending(CHUNKED, BLOCK, chunked=True)) as url:
        router = make_router(max_answer_bytes=4 * MiB)
        for kind in ("ollama", "openai", "mlx"):
            result = await router.backend(kind).probe(url, timeout=5)
            assert not result.ok
            assert result.error_kind == "protocol"
            assert "max_answer_bytes" in (result.error or "")
