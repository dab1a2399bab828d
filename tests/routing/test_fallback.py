"""Falling back: on connection errors, timeouts, 429, 5xx and broken answers; never on other 4xx."""

import asyncio

import pytest

from routing import AllTargetsFailed, StreamInterrupted, UpstreamStatusError
from tests.routing.conftest import target


@pytest.fixture
def chain(admin_state, openai_url, ollama_url):
    """Model "m": MLX (the OpenAI test server) first, then Ollama."""
    admin_state.set_route(
        "m",
        target("mlx", openai_url, "mlx-up", timeout_seconds=0.5),
        target("ollama", ollama_url, "llama3.2"),
    )


async def test_connection_refused_falls_back(make_router, admin_state, dead_url, ollama_url):
    admin_state.set_route(
        "m", target("mlx", dead_url, "x"), target("ollama", ollama_url, "llama3.2")
    )
    result = await make_router().generate(model="m", prompt="hi")
    assert result["backend"] == "ollama" and result["fallback"] is True


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_server_errors_and_429_fall_back(status, chain, make_router, openai_behavior):
    openai_behavior.status = status
    result = await make_router().generate(model="m", prompt="hi")
    assert result["backend"] == "ollama" and len(openai_behavior.requests) == 1


async def test_a_timeout_falls_back(chain, make_router, openai_behavior):
    openai_behavior.delay = 2.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await make_router().generate(model="m", prompt="hi")
    assert result["backend"] == "ollama"
    assert loop.time() - started < 1.5  # the target's 0.5 s timeout, not the 2 s delay


@pytest.mark.parametrize("stream", [False, True])
async def test_malformed_json_falls_back(stream, chain, make_router, openai_behavior):
    openai_behavior.malformed = True
    router = make_router()
    if stream:
        s = router.stream(model="m", prompt="hi")
        assert "".join([t async for t in s]) == "Hello, world!"
        assert s.result["fallback"] is True
    else:
        assert (await router.generate(model="m", prompt="hi"))["backend"] == "ollama"


async def test_a_200_that_fails_before_content_falls_back_in_a_stream(
    chain, make_router, openai_behavior, ollama_behavior
):
    openai_behavior.fail_before_content = True
    s = make_router().stream(model="m", prompt="hi")
    assert [t async for t in s] == ["Hello", ",", " world", "!"]
    assert s.result["backend"] == "ollama"


async def test_an_ollama_error_line_before_content_falls_back(
    make_router, admin_state, ollama_url, openai_url, ollama_behavior
):
    admin_state.set_route("m", target("ollama", ollama_url, "a"), target("openai", openai_url, "b"))
    ollama_behavior.fail_before_content = True
    s = make_router().stream_chat(model="m", messages=[{"role": "user", "content": "x"}])
    assert "".join([t async for t in s]) == "Hello, world!" and s.result["backend"] == "openai"


async def test_a_stream_cut_before_content_falls_back(chain, make_router, openai_behavior):
    openai_behavior.cut_after = 0
    s = make_router().stream(model="m", prompt="hi")
    assert "".join([t async for t in s]) == "Hello, world!" and s.result["backend"] == "ollama"


@pytest.mark.parametrize("fault", ["cut_after", "end_early_after"])
async def test_a_stream_cut_half_way_raises_instead_of_repeating_text(
    fault, chain, make_router, openai_behavior, ollama_behavior
):
    setattr(openai_behavior, fault, 2)
    received = []
    with pytest.raises(StreamInterrupted) as info:
        async for text in make_router().stream(model="m", prompt="hi"):
            received.append(text)
    assert received == ["Hello", ","]
    assert info.value.cause.target.backend_type == "mlx"
    assert ollama_behavior.requests == []  # never fell back after content


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_a_4xx_is_the_callers_error_and_does_not_fall_back(
    status, chain, make_router, openai_behavior, ollama_behavior
):
    openai_behavior.status = status
    openai_behavior.error_message = "prompt is too long for context window"
    with pytest.raises(UpstreamStatusError) as info:
        await make_router().generate(model="m", prompt="hi")
    assert info.value.status_code == status
    assert info.value.backend_message == "prompt is too long for context window"
    assert ollama_behavior.requests == []


async def test_an_unknown_ollama_model_raises_ollamas_message(
    make_router, admin_state, ollama_url, ollama_behavior
):
    ollama_behavior.models = ("llama3.2:latest",)
    admin_state.set_route("m", target("ollama", ollama_url, "phi3:mini-classify"))
    with pytest.raises(UpstreamStatusError, match='model "phi3:mini-classify" not found'):
        await make_router().generate(model="m", prompt="hi")


async def test_when_every_target_fails_one_error_lists_each(
    make_router, admin_state, dead_url, openai_url, ollama_url, openai_behavior, ollama_behavior
):
    admin_state.set_route(
        "m",
        target("mlx", dead_url, "a"),
        target("openai", openai_url, "b"),
        target("ollama", ollama_url, "c"),
    )
    openai_behavior.status = 503
    ollama_behavior.malformed = True
    with pytest.raises(AllTargetsFailed) as info:
        await make_router().generate(model="m", prompt="hi")
    message = str(info.value)
    assert "all 3 targets failed for model 'm'" in message
    assert (
        "cannot connect" in message
        and "HTTP 503: simulated failure" in message
        and "malformed JSON" in message
    )
    assert [f.target.backend_type for f in info.value.failures] == ["mlx", "openai", "ollama"]
    assert [f.kind for f in info.value.failures] == ["connect", "http_5xx", "protocol"]
    assert info.value.failures[1].error.status_code == 503


async def test_targets_marked_down_are_skipped_unless_all_are(
    make_router, admin_state, openai_url, ollama_url, openai_behavior
):
    admin_state.set_route(
        "m", target("mlx", openai_url, "a", health="down"), target("ollama", ollama_url, "b")
    )
    result = await make_router().generate(model="m", prompt="hi")
    assert (
        result["backend"] == "ollama"
        and openai_behavior.requests == []
        and result["fallback"] is True
    )
    admin_state.set_route(
        "n",
        target("mlx", openai_url, "a", health="down"),
        target("ollama", ollama_url, "b", health="down"),
    )
    assert (await make_router().generate(model="n", prompt="hi"))["backend"] == "mlx"


async def test_cancelling_a_stream_closes_the_upstream_connection(
    make_router, tmp_path, ollama_url, ollama_behavior
):
    ollama_behavior.words = tuple(f"w{i} " for i in range(200))
    ollama_behavior.chunk_delay = 0.01
    routes = tmp_path / "routes.json"
    routes.write_text(
        f'{{"routes": [{{"model": "m", "targets": [{{"backend_type": "ollama", "endpoint_url": "{ollama_url}"}}]}}]}}'
    )
    router = make_router(None, routes_file=routes)
    got = []

    async def consume():
        async for text in router.stream(model="m", prompt="hi"):
            got.append(text)

    task = asyncio.create_task(consume())
    while len(got) < 3:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The half-read response was closed, so its connection was dropped, not kept for reuse.
    transport = router._session().client._transport
    assert (transport._open, transport._idle_count) == (0, 0)
    assert len(got) < 50
