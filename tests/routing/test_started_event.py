"""`events()` names the serving target once, in a Started event, before its first content."""

import pytest

from routing import Finish, GenerationRequest, Started, TextDelta
from tests.routing.conftest import target


def _request(**kwargs):
    return GenerationRequest.build(model="m", messages=[{"role": "user", "content": "x"}], **kwargs)


@pytest.mark.parametrize("stream", [True, False])
async def test_started_comes_once_right_before_the_first_text(
    stream, make_router, admin_state, ollama_url
):
    admin_state.set_route("m", target("ollama", ollama_url, "llama3.2"))
    events = [e async for e in make_router().events(_request(stream=stream))]
    assert [type(e) for e in events[:2]] == [Started, TextDelta]
    assert sum(type(e) is Started for e in events) == 1
    started = events[0]
    assert (started.target.backend_type, started.target.endpoint_url) == ("ollama", ollama_url)
    assert started.fallback is False and type(events[-1]) is Finish


async def test_after_a_fallback_started_names_the_target_that_serves(
    make_router, admin_state, dead_url, openai_url, ollama_url, openai_behavior
):
    admin_state.set_route(
        "m",
        target("mlx", dead_url, "a"),
        target("openai", openai_url, "b"),
        target("ollama", ollama_url, "c"),
    )
    openai_behavior.fail_before_content = True  # a 200 that fails before any text
    events = [e async for e in make_router().events(_request(stream=True))]
    started = [e for e in events if type(e) is Started]
    assert len(started) == 1 and events[0] is started[0]
    assert started[0].target.endpoint_url == ollama_url and started[0].fallback is True
    assert events[-1].endpoint_url == ollama_url


async def test_an_answer_without_text_gets_started_right_before_finish(
    make_router, admin_state, ollama_url, ollama_behavior
):
    ollama_behavior.words = ()
    admin_state.set_route("m", target("ollama", ollama_url, "llama3.2"))
    events = [e async for e in make_router().events(_request(stream=True))]
    assert [type(e) for e in events] == [Started, Finish]


async def test_generate_and_streams_ignore_it(make_router, admin_state, ollama_url):
    admin_state.set_route("m", target("ollama", ollama_url, "llama3.2"))
    router = make_router()
    assert (await router.generate(model="m", prompt="hi"))["response"] == "Hello, world!"
    stream = router.stream(model="m", prompt="hi")
    assert [t async for t in stream] == ["Hello", ",", " world", "!"]
    assert stream.result["backend"] == "ollama"
