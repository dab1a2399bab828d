"""An upstream that sends keep-alives and no content is timed out at the target's first-content
deadline and the call falls back; content arriving in time is unaffected.

The keep-alive upstream is tests/upstreams/scripted.py: an SSE comment (``: keepalive``) or a
blank NDJSON line every 0.2 s, so the per-read timeout never fires.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from routing import AllTargetsFailed
from tests.routing.conftest import target

KEEPALIVE = {"openai": b": keepalive\n\n", "ollama": b"\n"}
# Generous: proves the call was not held until the per-read timeout (which never fires), and
# asserts no speed.
WELL_BEFORE = 4.0


def openai_text(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"text": text}]}).encode() + b"\n\n"


def ollama_text(text: str) -> bytes:
    return json.dumps({"response": text, "done": False}).encode() + b"\n"


OPENAI_END = openai_text("") + b"data: [DONE]\n\n"
OLLAMA_END = json.dumps({"response": "", "done": True, "eval_count": 2}).encode() + b"\n"


async def stream_all(router, **kwargs):
    async with asyncio.timeout(30), router.stream(**kwargs) as answer:
        texts = [text async for text in answer]
    return texts, answer.result


@pytest.mark.parametrize("kind", ["openai", "ollama"])
async def test_keepalives_without_content_fall_back_at_the_first_token_deadline(
    kind, make_router, admin_state, script, scripted_url, ollama_url
):
    admin_state.set_route(
        "m",
        target(kind, scripted_url, "stuck", timeout_seconds=30, first_token_timeout_seconds=1),
        target("ollama", ollama_url, "healthy"),
    )
    script.forever, script.pause = KEEPALIVE[kind], 0.2
    started = time.perf_counter()
    texts, result = await stream_all(make_router(), model="m", prompt="hi")
    assert time.perf_counter() - started < WELL_BEFORE
    assert "".join(texts) == "Hello, world!"
    assert (result["backend"], result["fallback"]) == ("ollama", True)


async def test_without_a_first_token_deadline_the_timeout_bounds_the_wait(
    make_router, admin_state, script, scripted_url, ollama_url
):
    # first_token_timeout_seconds null: the entry's timeout_seconds is the deadline.
    admin_state.set_route(
        "m",
        target("openai", scripted_url, "stuck", timeout_seconds=1),
        target("ollama", ollama_url, "healthy"),
    )
    script.forever, script.pause = KEEPALIVE["openai"], 0.2
    started = time.perf_counter()
    _, result = await stream_all(make_router(), model="m", prompt="hi")
    assert time.perf_counter() - started < WELL_BEFORE
    assert result["fallback"] is True


async def test_with_no_fallback_the_caller_hears_it_timed_out(
    make_router, admin_state, script, scripted_url
):
    admin_state.set_route(
        "m", target("ollama", scripted_url, "stuck", first_token_timeout_seconds=1)
    )
    script.forever, script.pause = KEEPALIVE["ollama"], 0.2
    with pytest.raises(AllTargetsFailed) as caught:
        await stream_all(make_router(), model="m", prompt="hi")
    (failure,) = caught.value.failures
    assert failure.kind == "timeout"
    assert "timed out: no content within 1 s" in failure.reason


@pytest.mark.parametrize("kind", ["openai", "ollama"])
async def test_content_after_keepalives_within_the_deadline_is_served(
    kind, make_router, admin_state, script, scripted_url, ollama_url
):
    admin_state.set_route(
        "m",
        target(kind, scripted_url, "slow-start", first_token_timeout_seconds=3),
        target("ollama", ollama_url, "healthy"),
    )
    text, end = (openai_text, OPENAI_END) if kind == "openai" else (ollama_text, OLLAMA_END)
    # Keep-alives for ~0.6 s, then the answer.
    script.chunks = [KEEPALIVE[kind]] * 3 + [text("He"), text("llo"), end]
    script.pause = 0.2
    texts, result = await stream_all(make_router(), model="m", prompt="hi")
    assert texts == ["He", "llo"]
    assert (result["backend"], result["fallback"]) == (kind, False)


async def test_the_deadline_is_for_the_first_content_only(
    make_router, admin_state, script, scripted_url, ollama_url
):
    # First content at once, then a word every 0.4 s: ~2 s in all, past the 1 s deadline.
    admin_state.set_route(
        "m",
        target("ollama", scripted_url, "steady", first_token_timeout_seconds=1),
        target("ollama", ollama_url, "healthy"),
    )
    script.chunks = [ollama_text(w) for w in ("a", "b", "c", "d", "e")] + [OLLAMA_END]
    script.pause = 0.4
    texts, result = await stream_all(make_router(), model="m", prompt="hi")
    assert texts == ["a", "b", "c", "d", "e"]
    assert result["fallback"] is False


async def test_an_answer_not_streamed_must_arrive_within_the_timeout(
    make_router, admin_state, script, scripted_url, ollama_url
):
    # A body trickled a byte at a time (JSON allows leading spaces) never trips a read timeout.
    admin_state.set_route(
        "m",
        target("ollama", scripted_url, "trickle", timeout_seconds=1),
        target("ollama", ollama_url, "healthy"),
    )
    script.forever, script.pause = b" ", 0.2
    started = time.perf_counter()
    async with asyncio.timeout(30):
        result = await make_router().generate(model="m", prompt="hi")
    assert time.perf_counter() - started < WELL_BEFORE
    assert (result["response"], result["fallback"]) == ("Hello, world!", True)


@pytest.mark.django_db(transaction=True)
async def test_the_deadline_set_in_the_registry_reaches_the_router(
    live_server, script, scripted_url, ollama_url, make_router
):
    from asgiref.sync import sync_to_async
    from django.db import connection

    from backends import services

    @sync_to_async
    def register() -> str:
        services.backend_create(
            fields={"model_name": "healthy", "backend_type": "ollama", "endpoint_url": ollama_url}
        )
        services.backend_create(
            fields={
                "model_name": "m",
                "backend_type": "ollama",
                "endpoint_url": scripted_url,
                "timeout_seconds": 30,
                "first_token_timeout_seconds": 1,
            },
            fallbacks=["healthy"],
        )
        key = services.service_key_create(name="deadline test")[1]
        connection.close()  # this thread's connection, so the test database can be dropped
        return key

    key = await register()
    script.forever, script.pause = KEEPALIVE["ollama"], 0.2
    started = time.perf_counter()
    _, result = await stream_all(
        make_router(live_server.url, service_key=key), model="m", prompt="hi"
    )
    assert time.perf_counter() - started < WELL_BEFORE
    assert (result["upstream_model"], result["fallback"]) == ("healthy", True)
