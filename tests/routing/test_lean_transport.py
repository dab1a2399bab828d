"""The router's HTTP/1.1 transport against raw servers that do awkward, broken or slow things."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from routing import AllTargetsFailed, UpstreamTimeout
from routing._transport import CHECK_ADDRESS, LeanTransport
from tests.routing.conftest import target
from tests.routing.raw_servers import (
    OLLAMA_ANSWER,
    Handler,
    RawServer,
    answering,
    ok,
    read_request,
)
from tests.routing.tls import client_context, server_context, write_self_signed


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=LeanTransport()) as client:
        yield client


# -- bodies and connection reuse -----------------------------------------------------------


async def test_it_reads_chunked_sized_and_close_delimited_bodies_on_one_connection(client):
    server = RawServer(
        answering(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nHello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"sized"),
            b"HTTP/1.0 200 OK\r\n\r\nuntil close",
            then_close=True,
        )
    )
    async with server as url:
        async with client.stream("POST", url + "/a", content=b"x") as response:
            assert [chunk async for chunk in response.aiter_raw()] == [b"Hello", b", world"]
        assert (await client.post(url + "/b", json={})).text == "sized"
        assert (await client.get(url + "/c")).text == "until close"
    assert server.connections == 1


async def test_a_fully_read_body_gives_its_connection_back_for_the_next_request(client):
    server = RawServer(answering(*[ok()] * 5))
    async with server as url:
        for _ in range(5):
            assert (await client.get(url)).text == "ok"
    assert server.connections == 1


async def test_a_consumer_that_stops_mid_body_closes_the_connection(client):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf ")
        await writer.drain()
        await read_request(reader)  # the rest never comes: the client hangs up instead

    server = RawServer(handler)
    async with server as url:
        async with client.stream("GET", url) as response:
            async for _ in response.aiter_raw():
                break
        async with client.stream("GET", url) as response:
            async for _ in response.aiter_raw():
                break
        await asyncio.sleep(0.05)
    assert server.connections == 2
    assert server.closed_by_client == 2


async def test_a_keep_alive_connection_the_server_closed_while_idle_is_not_taken(client):
    # Seen closed before use, so even a POST (never retried) goes out on a fresh connection.
    server = RawServer(answering(ok(), then_close=True))  # keep-alive by default, then hangs up
    async with server as url:
        for _ in range(3):
            assert (await client.post(url + "/x", json={"a": 1})).text == "ok"
            await asyncio.sleep(0.05)
    assert server.connections == 3


async def test_a_get_on_a_reused_connection_closed_under_it_is_retried_once(client):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok())
        await writer.drain()
        await read_request(reader)  # reads the second request, then hangs up without answering

    server = RawServer(handler)
    async with server as url:
        assert (await client.get(url)).text == "ok"
        assert (await client.get(url)).text == "ok"  # on a second, fresh connection
    assert server.connections == 2


async def test_a_post_on_a_reused_connection_closed_under_it_is_never_sent_twice(client):
    # The upstream may have started the generation: sending it again could run it twice.
    posts: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok())
        await writer.drain()
        posts.append(await read_request(reader))  # takes the POST, hangs up unanswered

    server = RawServer(handler)
    async with server as url:
        assert (await client.get(url)).text == "ok"
        with pytest.raises(httpx.RemoteProtocolError, match="without answering"):
            await client.post(url + "/api/generate", json={"prompt": "hi"})
    assert server.connections == 1
    assert len(posts) == 1


async def test_a_get_cut_after_the_first_byte_of_its_answer_is_not_retried(client):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok())
        await writer.drain()
        await read_request(reader)
        writer.write(b"HTTP/1.1 200")  # part of an answer, then the connection closes

    server = RawServer(handler)
    async with server as url:
        assert (await client.get(url)).text == "ok"
        with pytest.raises(httpx.RemoteProtocolError, match="closed mid-way"):
            await client.get(url)
    assert server.connections == 1


async def test_a_fresh_connection_closed_without_an_answer_is_not_retried(client):
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    server = RawServer(hang_up)
    async with server as url:
        with pytest.raises(httpx.RemoteProtocolError, match="without answering"):
            await client.get(url)
    assert server.connections == 1


# -- malformed answers ---------------------------------------------------------------------

MALFORMED = {
    "status line": b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
    "not http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "header line": b"HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n",
    "space before colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    "negative length": b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
    "non-numeric length": b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
    "length with underscore": b"HTTP/1.1 200 OK\r\nContent-Length: 1_0\r\n\r\n",
    "conflicting lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    "non-hex chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "negative chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nab\r\n",
    "chunk without its CRLF": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd",
    "body cut short": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
    "head cut short": b"HTTP/1.1 200 OK\r\nContent-Le",
}


@pytest.mark.parametrize("answer", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_answer_is_a_remote_protocol_error(client, answer):
    async with RawServer(answering(answer, then_close=True)) as url:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(url)


async def test_through_the_router_a_malformed_answer_names_its_target_and_falls_back(
    make_router, admin_state, ollama_url
):
    broken = b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n"
    async with RawServer(answering(broken, then_close=True)) as bad_url:
        admin_state.set_route(
            "m", target("ollama", bad_url, "up"), target("ollama", ollama_url, "up")
        )
        admin_state.set_route("only-bad", target("ollama", bad_url, "up"))
        router = make_router()
        result = await router.generate(model="m", prompt="hi")
        assert result["response"] == "Hello, world!"
        assert result["fallback"] is True
        with pytest.raises(AllTargetsFailed) as failed:
            await router.generate(model="only-bad", prompt="hi")
    message = str(failed.value)
    assert bad_url in message
    assert "Content-Length" in message  # llhttp names what it refused


# -- timeouts and limits -------------------------------------------------------------------


async def test_a_server_that_never_answers_is_a_read_timeout(client):
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async def stalls_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf ")
        await asyncio.sleep(5)

    async with RawServer(silent) as silent_url, RawServer(stalls_mid_body) as stall_url:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(silent_url, timeout=0.2)
        with pytest.raises(httpx.ReadTimeout):
            await client.get(stall_url, timeout=0.2)


async def test_a_refused_connection_is_a_connect_error(client):
    with pytest.raises(httpx.ConnectError):
        await client.get("http://127.0.0.1:9/")


def held_answers(release: asyncio.Event, body: bytes = b"ok") -> Handler:
    """Answer each request on the connection once ``release`` is set."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await release.wait()
            writer.write(ok(body))
            await writer.drain()

    return handler


async def test_a_request_beyond_max_connections_waits_for_a_free_one():
    release = asyncio.Event()
    server = RawServer(held_answers(release))
    transport = LeanTransport(limits=httpx.Limits(max_connections=1))
    async with server as url, httpx.AsyncClient(transport=transport) as client:
        first = asyncio.create_task(client.get(url))
        second = asyncio.create_task(client.get(url))
        await asyncio.sleep(0.1)
        assert server.connections == 1  # the second waits instead of opening another
        assert not second.done()
        release.set()
        assert (await first).text == (await second).text == "ok"
    assert server.connections == 1


async def test_a_request_waiting_longer_than_its_pool_timeout_fails_with_pool_timeout():
    release = asyncio.Event()
    transport = LeanTransport(limits=httpx.Limits(max_connections=1))
    async with (
        RawServer(held_answers(release)) as url,
        httpx.AsyncClient(transport=transport) as client,
    ):
        first = asyncio.create_task(client.get(url))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout, match="max_connections"):
            await client.get(url, timeout=httpx.Timeout(5, pool=0.2))
        release.set()
        assert (await first).text == "ok"
        assert (await client.get(url)).text == "ok"  # the timed-out waiter left no trace


async def test_the_router_caps_connections_and_maps_pool_timeout_to_upstream_timeout(
    make_router, admin_state
):
    release = asyncio.Event()
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (
        len(OLLAMA_ANSWER),
        OLLAMA_ANSWER,
    )

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await release.wait()
            writer.write(answer)
            await writer.drain()

    server = RawServer(handler)
    async with server as url:
        admin_state.set_route("m", target("ollama", url, "up"))
        # The admin look-up's connection is idle by then: the cap evicts it for the upstream.
        router = make_router(max_connections=1, connect_timeout=0.2)
        first = asyncio.create_task(router.generate(model="m", prompt="hi"))
        await asyncio.sleep(0.05)
        with pytest.raises(AllTargetsFailed) as failed:
            await router.generate(model="m", prompt="hi")
        release.set()
        assert (await first)["response"] == "hi"
    error = failed.value.failures[0].error
    assert isinstance(error, UpstreamTimeout)
    assert "max_connections" in str(error)
    assert server.connections == 1


async def test_idle_connections_past_keepalive_expiry_are_not_reused():
    server = RawServer(answering(*[ok()] * 3))
    transport = LeanTransport(limits=httpx.Limits(keepalive_expiry=0.1))
    async with server as url, httpx.AsyncClient(transport=transport) as client:
        await client.get(url)
        await client.get(url)  # within the expiry: same connection
        await asyncio.sleep(0.2)
        await client.get(url)
    assert server.connections == 2


async def test_no_more_idle_connections_are_kept_than_max_keepalive_connections():
    release = asyncio.Event()
    server = RawServer(held_answers(release))
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=1)
    async with server as url, httpx.AsyncClient(transport=LeanTransport(limits=limits)) as client:
        calls = [asyncio.create_task(client.get(url)) for _ in range(3)]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(*calls)
        assert server.connections == 3
        await asyncio.gather(*(client.get(url) for _ in range(2)))
    assert server.connections == 4  # one kept idle and reused, one opened anew


# -- the read timeout is per read, not per body ----------------------------------------------


def trickling(head: bytes, pieces: list[bytes], gap: float) -> Handler:
    """Answer once: the head, then each piece after ``gap`` seconds (then close, if no length)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head)
        for piece in pieces:
            await asyncio.sleep(gap)
            writer.write(piece)
            await writer.drain()
        if head is not CLOSE_HEAD:
            await read_request(reader)  # wait for the client to hang up

    return handler


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
SIZED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n"
CLOSE_HEAD = b"HTTP/1.0 200 OK\r\n\r\n"


@pytest.mark.parametrize(
    ("head", "pieces"),
    [
        (CHUNKED_HEAD, [b"2\r\nab\r\n", b"2\r\ncd\r\n", b"2\r\nef\r\n", b"0\r\n\r\n"]),
        (SIZED_HEAD, [b"ab", b"cd", b"ef"]),
        (CLOSE_HEAD, [b"ab", b"cd", b"ef"]),
    ],
    ids=["chunked", "sized", "close-delimited"],
)
async def test_a_slow_but_steady_body_longer_than_the_read_timeout_is_read_whole(
    client, head, pieces
):
    async with RawServer(trickling(head, pieces, gap=0.1)) as url:
        # Each gap (0.1 s) is well under the read timeout; the whole body (0.3-0.4 s) is not.
        response = await client.get(url, timeout=0.25)
    assert response.content == b"abcdef"


@pytest.mark.parametrize(
    ("head", "first"),
    [(CHUNKED_HEAD, b"2\r\nab\r\n"), (SIZED_HEAD, b"ab"), (CLOSE_HEAD, b"ab")],
    ids=["chunked", "sized", "close-delimited"],
)
async def test_a_body_that_stalls_between_pieces_is_a_read_timeout(client, head, first):
    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head + first)
        await asyncio.sleep(5)

    async with RawServer(stalls) as url, client.stream("GET", url, timeout=0.2) as response:
        pieces = []
        with pytest.raises(httpx.ReadTimeout):
            async for piece in response.aiter_raw():
                pieces.append(piece)
    assert pieces == [b"ab"]


async def test_a_consumer_pausing_longer_than_the_read_timeout_between_pieces_is_not_cut_off(
    client,
):
    # The server sends everything at once; the consumer sleeps 3x the read timeout after each
    # piece. The timer must be off while the body waits at its yield: a timer left armed
    # there would cancel the consumer's own sleep (or surface as a ReadTimeout later).
    pieces = [b"2\r\nab\r\n", b"2\r\ncd\r\n", b"2\r\nef\r\n", b"0\r\n\r\n"]
    server = RawServer(answering(CHUNKED_HEAD + b"".join(pieces), ok()))
    async with server as url:
        async with client.stream("GET", url, timeout=0.05) as response:
            received = []
            async for piece in response.aiter_raw():
                received.append(piece)
                await asyncio.sleep(0.15)
        assert received == [b"ab", b"cd", b"ef"]
        # The body ended cleanly: its connection went back to the pool for the next request.
        assert (await client.get(url, timeout=0.05)).text == "ok"
    assert server.connections == 1


# -- what the transport holds, whatever the upstream announces --------------------------------


async def test_a_huge_announced_chunk_is_handed_on_in_pieces_of_at_most_one_read(client):
    sent = 4 * 1024 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CHUNKED_HEAD + b"FFFFFFFFFFFF\r\n")
        for _ in range(sent // 65536):
            writer.write(b"x" * 65536)
            await writer.drain()
        await read_request(reader)  # wait for the client to hang up

    async with RawServer(handler) as url, client.stream("GET", url) as response:
        received = 0
        largest = 0
        async for piece in response.aiter_raw():
            received += len(piece)
            largest = max(largest, len(piece))
            if received >= sent:
                break
    assert received == sent
    assert largest <= 65536


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * 20_000 + b"\r\n",
    ],
    ids=["one long header", "many headers"],
)
async def test_a_response_head_over_64_kib_is_a_protocol_error(client, head):
    async with RawServer(answering(head, then_close=True)) as url:
        with pytest.raises(httpx.RemoteProtocolError, match="longer than 65536"):
            await client.get(url)


async def test_a_header_value_with_a_line_break_is_never_sent(client):
    server = RawServer(answering(ok()))
    async with server as url:
        with pytest.raises(httpx.LocalProtocolError, match="CR, LF or NUL"):
            await client.get(url, headers={"X-Request-ID": "a\r\nX-Injected: 1"})
    assert server.connections == 0


async def test_bytes_after_a_whole_answer_keep_the_answer_but_not_the_connection(client):
    server = RawServer(answering(ok() + b"HTTP/1.1 garbage", ok(), then_close=True))
    async with server as url:
        assert (await client.get(url)).text == "ok"
        assert (await client.get(url)).text == "ok"
    assert server.connections == 2


async def test_an_unasked_switch_of_protocols_is_a_protocol_error(client):
    answer = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
    )
    async with RawServer(answering(answer, then_close=True)) as url:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(url)


async def test_head_requests_are_refused_rather_than_misread(client):
    async with RawServer(answering(ok())) as url:
        with pytest.raises(httpx.UnsupportedProtocol, match="HEAD"):
            await client.head(url)


# -- https -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return write_self_signed(tmp_path_factory.mktemp("tls"))


async def test_https_is_spoken_with_the_certificate_checked_against_the_name(certificate):
    cert, key = certificate
    server = RawServer(answering(ok(), ok()), tls=server_context(cert, key))
    transport = LeanTransport(
        allowed_networks=["127.0.0.0/8", "::1/128"], ssl_context=client_context(cert)
    )
    async with server as url, httpx.AsyncClient(transport=transport) as client:
        by_name = url.replace("127.0.0.1", "localhost")
        # Resolved and checked, connected to 127.0.0.1, the certificate checked for localhost.
        response = await client.get(by_name, extensions={CHECK_ADDRESS: True})
        assert response.text == "ok"
        assert (await client.get(by_name, extensions={CHECK_ADDRESS: True})).text == "ok"
    assert server.connections == 1


async def test_an_untrusted_certificate_is_a_connect_error(certificate):
    cert, key = certificate
    async with (
        RawServer(answering(ok()), tls=server_context(cert, key)) as url,
        httpx.AsyncClient(transport=LeanTransport()) as client,  # certifi's certificates
    ):
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(url)
