"""Whatever an upstream answers and whatever a caller passes, a call ends in an answer or a
RoutingError, in time; an upstream's malformed answer is that target's failure and falls back.

The upstreams are real servers on 127.0.0.1: tests/upstreams/scripted.py plays the bytes a
test scripts (valid JSON of the wrong shape, arbitrary bytes), the Ollama test server is the
healthy second target.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing import (
    AllTargetsFailed,
    InternalError,
    InvalidRequest,
    RoutingError,
    StreamInterrupted,
    UpstreamProtocolError,
)
from tests.routing.conftest import target

CALL_DEADLINE = 15  # seconds: far beyond any answer here; reaching it means a hang
PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# -- what a broken upstream sends ------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    # Lone surrogates included: JSON's "\ud800" is valid JSON, not valid text.
    | st.text(st.characters(exclude_categories=()), max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _maybe(shape: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The field's right shape (with any values inside) or any JSON value at all."""
    return st.one_of(shape, json_values)


_openai_choice = st.fixed_dictionaries(
    {},
    optional={
        "text": json_values,
        "delta": _maybe(st.fixed_dictionaries({}, optional={"content": json_values})),
        "message": _maybe(st.fixed_dictionaries({}, optional={"content": json_values})),
        "finish_reason": json_values,
    },
)
openai_objects = st.fixed_dictionaries(
    {},
    optional={
        "choices": _maybe(st.lists(_maybe(_openai_choice), max_size=2)),
        "usage": _maybe(
            st.fixed_dictionaries(
                {}, optional={"prompt_tokens": json_values, "completion_tokens": json_values}
            )
        ),
        "model": json_values,
        "error": json_values,
    },
)
ollama_objects = st.fixed_dictionaries(
    {},
    optional={
        "response": json_values,
        "message": _maybe(st.fixed_dictionaries({}, optional={"content": json_values})),
        "done": json_values,
        "done_reason": json_values,
        "total_duration": json_values,
        "load_duration": json_values,
        "prompt_eval_count": json_values,
        "prompt_eval_duration": json_values,
        "eval_count": json_values,
        "eval_duration": json_values,
        "model": json_values,
        "error": json_values,
    },
)


def _encode(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def openai_body(objects: list[Any], done: bool, stream: bool) -> list[bytes]:
    if not stream:
        return [_encode(objects[0] if objects else {})]
    chunks = [b"data: " + _encode(obj) + b"\n\n" for obj in objects]
    return chunks + ([b"data: [DONE]\n\n"] if done else [])


def ollama_body(objects: list[Any], stream: bool) -> list[bytes]:
    if not stream:
        return [_encode(objects[0] if objects else {})]
    return [_encode(obj) + b"\n" for obj in objects]


@st.composite
def malformed_answers(draw: st.DrawFn, kind: str, stream: bool) -> list[bytes]:
    """The body of a 200 answer: JSON shaped nearly like the protocol's, or any bytes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.lists(st.binary(max_size=200), max_size=4))
    if kind == "openai":
        objects = draw(st.lists(openai_objects, min_size=1, max_size=4))
        return openai_body(objects, draw(st.booleans()), stream)
    return ollama_body(draw(st.lists(ollama_objects, min_size=1, max_size=4)), stream)


# -- calling ---------------------------------------------------------------------------------


async def call(
    router: Any, stream: bool, chat: bool = False, **kwargs: Any
) -> tuple[dict[str, Any], list[str]]:
    """Make one call within CALL_DEADLINE; return the result and the text pieces yielded."""
    texts: list[str] = []
    if chat:
        kwargs["messages"] = [{"role": "user", "content": kwargs.pop("prompt")}]
    async with asyncio.timeout(CALL_DEADLINE):
        if not stream:
            return await (router.chat if chat else router.generate)(**kwargs), texts
        async with (router.stream_chat if chat else router.stream)(**kwargs) as answer:
            async for text in answer:
                texts.append(text)
        assert answer.result is not None
        return answer.result, texts


def chain_with_a_healthy_fallback(admin_state, kind, scripted_url, ollama_url):
    admin_state.set_route(
        "m",
        target(kind, scripted_url, "broken", entry_id=1),
        target("ollama", ollama_url, "healthy", entry_id=2),
    )


@pytest.fixture
def router(make_router):
    # A breaker that never opens: every example must reach the malformed target.
    return make_router(breaker_threshold=10**9)


# -- properties ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "ollama"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@PROPERTY
@given(data=st.data())
async def test_a_malformed_answer_falls_back_or_interrupts_the_stream_never_anything_else(
    data, kind, stream, router, script, scripted_url, ollama_url, admin_state
):
    chain_with_a_healthy_fallback(admin_state, kind, scripted_url, ollama_url)
    script.chunks = data.draw(malformed_answers(kind, stream))
    chat = data.draw(st.booleans())
    try:
        result, texts = await call(router, stream, chat, model="m", prompt="hi")
    except StreamInterrupted as exc:
        # Only a stream that already passed text on may end this way: no fallback after text.
        assert stream and exc.chars_sent > 0
        assert isinstance(exc.cause, UpstreamProtocolError)
        return
    assert all(text.encode("utf-8") for text in texts if text)
    if result["fallback"]:
        assert (result["backend"], result["response"]) == ("ollama", "Hello, world!")
    else:  # the scripted answer was a well-formed one after all: so is what the caller got
        assert result["backend"] == kind
        assert_well_typed(result)


def assert_well_typed(result: dict[str, Any]) -> None:
    """What a caller (the gateway) renders has the types the result promises."""
    assert isinstance(result["response"], str)
    result["response"].encode("utf-8")  # never a lone surrogate: every text can be sent on
    assert result["done_reason"] is None or isinstance(result["done_reason"], str)
    (result["done_reason"] or "").encode("utf-8")
    assert type(result["total_duration"]) is int and result["total_duration"] >= 0
    for key in ("eval_count", "prompt_eval_count"):
        assert result[key] is None or (type(result[key]) is int and result[key] >= 0), key


@pytest.mark.parametrize("kind", ["openai", "ollama"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@PROPERTY
@given(
    status=st.sampled_from([200, 201, 301, 400, 404, 413, 429, 500, 502, 503]),
    content_type=st.sampled_from(
        ["application/json", "text/event-stream", "application/x-ndjson", "text/html"]
    ),
    chunks=st.lists(st.binary(max_size=300), max_size=5),
)
async def test_any_status_and_bytes_end_in_an_answer_or_a_routing_error(
    status, content_type, chunks, kind, stream, router, script, scripted_url, admin_state
):
    admin_state.set_route("m", target(kind, scripted_url, "broken"))
    script.status, script.content_type, script.chunks = status, content_type, chunks
    with contextlib.suppress(RoutingError):
        await call(router, stream, model="m", prompt="hi")


# Text as a caller may hold it, lone surrogates (U+D800-U+DFFF) included.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)


def _has_lone_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@PROPERTY
@given(
    model=st.one_of(any_text, st.just("m" * 65536), st.just("../llm-backends/1")),
    prompt=any_text,
    system=st.none() | any_text,
    stop=st.none() | st.lists(any_text, max_size=2),
    chat=st.booleans(),
)
async def test_any_text_from_the_caller_ends_in_an_answer_or_a_routing_error(
    model, prompt, system, stop, chat, make_router, ollama_url
):
    # The stand-in admin answers 404 for these models: the default chain, the Ollama server.
    router = make_router(default_ollama_url=ollama_url)
    kwargs: dict[str, Any] = {"model": model, "system": system, "stop": stop}
    try:
        async with asyncio.timeout(CALL_DEADLINE):
            if chat:
                await router.chat(messages=[{"role": "user", "content": prompt}], **kwargs)
            else:
                await router.generate(prompt=prompt, **kwargs)
    except InvalidRequest as exc:
        unsendable = [
            name
            for name, value in (("model", model), ("prompt", prompt), ("system", system or ""))
            if _has_lone_surrogate(value)
        ]
        if len(model) > 255 or any(_has_lone_surrogate(s) for s in stop or ()) or unsendable:
            return  # refused before anything was sent, as it must be
        if str(exc).startswith("model must not contain"):
            return  # '.'/'..' segments, control characters: not one path segment (route_path)
        assert not model.strip() or not prompt.strip(), exc  # otherwise only empty input
    except RoutingError:
        pass


# -- the shapes the review found, one by one --------------------------------------------------

OPENAI_ANSWER = {"choices": [{"text": "ok", "finish_reason": "stop"}], "usage": {}}


@pytest.mark.parametrize(
    "kind, stream, chunks",
    [
        ("openai", False, [_encode({"choices": ["x"]})]),
        ("openai", False, [_encode({**OPENAI_ANSWER, "usage": "x"})]),
        ("openai", False, [_encode({**OPENAI_ANSWER, "usage": {"completion_tokens": -1}})]),
        ("openai", True, openai_body([{"choices": ["x"]}], True, True)),
        ("openai", True, openai_body([{"choices": [{"text": 5}]}], True, True)),
        ("openai", True, openai_body([{"choices": [{"delta": {"content": 5}}]}], True, True)),
        ("openai", True, openai_body([{"choices": [], "usage": "x"}], True, True)),
        ("ollama", False, [_encode({"response": 5, "done": True})]),
        ("ollama", False, [_encode({"response": "ok", "done": True, "total_duration": "x"})]),
        ("ollama", True, ollama_body([{"response": 5, "done": False}], True)),
        ("ollama", True, ollama_body([{"response": "", "done": True, "eval_count": "x"}], True)),
        # One final line that carries the text too: its stats are checked before the text.
        (
            "ollama",
            True,
            ollama_body([{"response": "hi", "done": True, "total_duration": "x"}], True),
        ),
        ("ollama", True, [b"\xff\xfe{{{\n", b'{"done": true}\n']),
        ("openai", False, [_encode({**OPENAI_ANSWER, "choices": [{"finish_reason": "\ud800"}]})]),
    ],
    ids=[
        "openai-choices-x",
        "openai-usage-x",
        "openai-negative-count",
        "openai-stream-choices-x",
        "openai-stream-text-5",
        "openai-stream-chat-content-5",
        "openai-stream-usage-x",
        "ollama-response-5",
        "ollama-total-duration-x",
        "ollama-stream-response-5",
        "ollama-stream-eval-count-x",
        "ollama-stream-text-and-total-duration-x",
        "ollama-stream-bytes",
        "openai-finish-reason-surrogate",
    ],
)
async def test_a_wrong_shape_before_any_text_falls_back_to_the_next_target(
    kind, stream, chunks, router, script, scripted_url, ollama_url, admin_state
):
    chain_with_a_healthy_fallback(admin_state, kind, scripted_url, ollama_url)
    script.chunks = chunks
    chat = b'"delta"' in b"".join(chunks)  # a chat chunk: ask /v1/chat/completions
    result, _ = await call(router, stream, chat, model="m", prompt="hi")
    assert (result["backend"], result["fallback"], result["response"]) == (
        "ollama",
        True,
        "Hello, world!",
    )
    assert script.requests  # the broken target was asked first


@pytest.mark.parametrize(
    "kind, chunks",
    [
        (
            "openai",
            openai_body(
                [{"choices": [{"text": "Hel"}]}, {"choices": [{"text": 7}]}],
                True,
                True,
            ),
        ),
        (
            "ollama",
            ollama_body(
                [{"response": "Hel", "done": False}, {"response": [1], "done": False}], True
            ),
        ),
        (
            "ollama",
            ollama_body(
                [{"response": "Hel", "done": False}, {"done": True, "eval_count": -1}], True
            ),
        ),
    ],
    ids=["openai-text-7", "ollama-response-list", "ollama-negative-count"],
)
async def test_a_wrong_shape_after_text_ends_the_stream_with_stream_interrupted(
    kind, chunks, router, script, scripted_url, ollama_url, admin_state
):
    chain_with_a_healthy_fallback(admin_state, kind, scripted_url, ollama_url)
    script.chunks = chunks
    texts: list[str] = []
    with pytest.raises(StreamInterrupted) as caught:
        async with asyncio.timeout(CALL_DEADLINE), router.stream(model="m", prompt="hi") as answer:
            async for text in answer:
                texts.append(text)
    assert texts == ["Hel"] and caught.value.chars_sent == 3
    assert isinstance(caught.value.cause, UpstreamProtocolError)


async def test_a_malformed_answer_with_no_fallback_says_what_was_wrong(
    router, script, scripted_url, admin_state
):
    admin_state.set_route("m", target("ollama", scripted_url, "broken"))
    script.chunks = [_encode({"response": 5, "done": True})]
    with pytest.raises(AllTargetsFailed) as caught:
        await router.generate(model="m", prompt="hi")
    (failure,) = caught.value.failures
    assert failure.kind == "protocol" and "answer text must be a string" in failure.reason


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"model": "m", "prompt": "\ud800"}, "prompt"),
        ({"model": "m\udfff", "prompt": "hi"}, "model"),
        ({"model": "m", "prompt": "hi", "system": "a\ud800b"}, "system"),
        ({"model": "m", "prompt": "hi", "stop": ["ok", "\udc80"]}, "stop"),
        ({"model": "m" * 65536, "prompt": "hi"}, "model must be at most 255 characters"),
    ],
)
async def test_text_that_cannot_be_sent_is_refused_naming_the_field(
    kwargs, field, make_router, admin_state
):
    router = make_router()
    with pytest.raises(InvalidRequest, match=field):
        await router.generate(**kwargs)
    with pytest.raises(InvalidRequest, match=field):
        router.stream(**kwargs)
    assert admin_state.lookups == []  # refused before anything was sent


@pytest.mark.parametrize("model", ["m\ud800", "m" * 65536, "", 5])
async def test_a_route_look_up_refuses_a_model_name_no_route_could_have(
    model, make_router, admin_state
):
    with pytest.raises(InvalidRequest, match="^model "):
        await make_router().route(model)
    assert admin_state.lookups == []


async def test_an_unsendable_message_field_is_refused_naming_it(make_router):
    router = make_router()
    bad = [{"role": "user", "content": "hi", "images": ["ok", "\ud800"]}]
    with pytest.raises(InvalidRequest, match=r"messages\[0\]\.images\[1\]"):
        await router.chat(model="m", messages=bad)
    with pytest.raises(InvalidRequest, match=r"messages\[0\]\.content"):
        await router.chat(model="m", messages=[{"role": "user", "content": "\udfff"}])
    with pytest.raises(InvalidRequest, match=r"messages\[0\]\.extra must be JSON"):
        await router.chat(model="m", messages=[{"role": "user", "content": "x", "extra": {1, 2}}])


async def test_a_bug_inside_the_router_reaches_the_caller_as_an_internal_error(
    make_router, monkeypatch
):
    # In-process fault: no real server can make routing's own code raise.
    router = make_router()

    async def broken_lookup(model: str) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(router._routes, "get", broken_lookup)
    with pytest.raises(InternalError, match="KeyError") as caught:
        await router.generate(model="m", prompt="hi")
    assert isinstance(caught.value.__cause__, KeyError)
    with pytest.raises(InternalError):
        async with router.stream(model="m", prompt="hi") as answer:
            async for _ in answer:
                pass


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_lone_surrogates_in_an_answer_become_replacement_characters(
    stream, router, script, scripted_url, admin_state
):
    # "\ud800" is valid JSON but no text a caller could encode: replaced, as bad bytes are.
    admin_state.set_route("m", target("ollama", scripted_url, "odd"))
    if stream:
        script.chunks = ollama_body(
            [{"response": "a\ud800", "done": False}, {"response": "b", "done": True}], True
        )
    else:
        script.chunks = [_encode({"response": "a\ud800b", "done": True})]
    result, _ = await call(router, stream, model="m", prompt="hi")
    assert result["response"] == "a\ufffdb"
