"""Timing one call: whatever a target answers, a figure or a classified error, in time."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backends.comparison_calls import CallSession, CallTiming, decode_rate
from backends.comparison_prompts import PROMPT_SET, prompt_request
from routing import Target
from tests.upstreams.runner import serve_in_thread

LOOPBACK = ["127.0.0.0/8"]
CLASSIFIED = re.compile(r"^(HTTP \d{3}|cannot connect|timed out|malformed answer|call failed)$")


class Answer:
    status = 200
    body = b""


@pytest.fixture(scope="module")
def answering() -> Iterator[tuple[str, type[Answer]]]:
    async def reply(request: Request) -> Response:
        await request.body()
        return Response(Answer.body, status_code=Answer.status, media_type="text/event-stream")

    app = Starlette(routes=[Route(p, reply, methods=["POST"]) for p in ("/v1/chat/completions", "/api/chat")])  # fmt: skip
    with serve_in_thread(app) as server:
        yield server.url, Answer


_PIECES = st.sampled_from(
    [
        b'data: {"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}\n\n',
        b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n',
        b"data: [DONE]\n\n",
        b'{"message":{"content":"Hi"},"done":false}\n',
        b'{"done":true,"eval_count":2,"prompt_eval_count":3}\n',
        b'{"error":"boom"}\n',
        b"data: {\n\n",
        b"\r\n",
    ]
)
_BODIES = st.lists(_PIECES | st.binary(max_size=40), max_size=8).map(b"".join)


def _call(url: str, kind: str) -> CallTiming | None:
    async def go() -> CallTiming | None:
        async with CallSession(LOOPBACK) as session:
            target = Target(backend_type=kind, endpoint_url=url, upstream_model="m", timeout_seconds=5)  # fmt: skip
            request = prompt_request(PROMPT_SET[0], model="m", tag="[t]")
            return await session.time_call(target, request, limit=10)

    return asyncio.run(go())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(body=_BODIES, status=st.sampled_from([200, 200, 200, 404, 500]), kind=st.sampled_from(["openai", "ollama"]))  # fmt: skip
def test_any_answer_is_timed_or_a_classified_error(
    answering: tuple[str, Any], body: bytes, status: int, kind: str
) -> None:
    url, answer = answering
    answer.body, answer.status = body, status
    timing = _call(url, kind)
    assert timing is not None  # answered well within the 10 s limit
    assert timing.latency_ms >= 0
    if timing.ok:
        assert status == 200 and timing.error == ""
    else:
        assert CLASSIFIED.match(timing.error), timing.error  # never the target's own words
        assert timing.error_kind in {"connect", "timeout", "protocol", "http_4xx", "http_5xx"}


def test_a_free_port_is_cannot_connect(dead_url: str) -> None:
    timing = _call(dead_url, "openai")
    assert timing is not None
    assert (timing.ok, timing.error_kind, timing.error) == (False, "connect", "cannot connect")


def test_an_address_outside_the_allowed_networks_is_refused_without_a_request(answering: Any) -> None:  # fmt: skip
    url, _ = answering

    async def go() -> CallTiming | None:
        async with CallSession(["10.0.0.0/8"]) as session:
            target = Target(backend_type="openai", endpoint_url=url, upstream_model="m")
            return await session.time_call(target, prompt_request(PROMPT_SET[0], model="m", tag="t"), limit=10)  # fmt: skip

    timing = asyncio.run(go())
    assert timing is not None and not timing.ok
    assert timing.error.startswith("refused: ")


def test_decode_rate_counts_the_tokens_after_the_first() -> None:
    assert decode_rate(11, first=1.0, last=2.0) == 10.0
    assert decode_rate(1, first=1.0, last=2.0) is None  # one token: no rate
    assert decode_rate(5, first=1.0, last=1.0) is None  # all text in one chunk
    assert decode_rate(None, first=1.0, last=2.0) is None
