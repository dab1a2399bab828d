import pytest

from routing import InvalidRequest, LLMRouter, RouterClosed


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"model": "", "prompt": "x"}, "model must be a non-empty string"),
        ({"model": None, "prompt": "x"}, "model must be a non-empty string"),
        ({"model": "m", "prompt": ""}, "prompt must not be empty"),
        ({"model": "m", "prompt": 5}, "prompt must be a string"),
        ({"model": "m", "prompt": "x", "temperature": "hot"}, "temperature must be a number"),
        ({"model": "m", "prompt": "x", "temperature": True}, "temperature must be a number"),
        ({"model": "m", "prompt": "x", "temperature": -1}, "temperature must be between"),
        ({"model": "m", "prompt": "x", "max_tokens": 0}, "max_tokens must be a positive integer"),
        ({"model": "m", "prompt": "x", "max_tokens": 1.5}, "max_tokens must be a positive integer"),
        ({"model": "m", "prompt": "x", "top_p": 2}, "top_p must be between"),
        ({"model": "m", "prompt": "x", "stop": [1]}, "stop must be a string or a list of strings"),
        ({"model": "m", "prompt": "x", "seed": "1"}, "seed must be an integer"),
    ],
)
async def test_bad_arguments_raise_a_clear_error_before_any_call(
    kwargs, message, make_router, admin_state
):
    router = make_router()
    with pytest.raises(InvalidRequest, match=message):
        await router.generate(**kwargs)
    assert admin_state.lookups == []


@pytest.mark.parametrize(
    "messages, message",
    [
        ([], "messages must not be empty"),
        ("hi", "messages must be a list"),
        ([{"role": "robot", "content": "x"}], "role must be one of"),
        ([{"role": "user", "content": 3}], "content must be a string"),
    ],
)
async def test_bad_messages_raise_a_clear_error(messages, message, make_router):
    with pytest.raises(InvalidRequest, match=message):
        await make_router().chat(model="m", messages=messages)
    with pytest.raises(InvalidRequest, match=message):
        make_router().stream_chat(model="m", messages=messages)


async def test_a_closed_router_says_so():
    router = LLMRouter(None, metrics=False)
    await router.aclose()
    with pytest.raises(RouterClosed):
        await router.generate(model="m", prompt="hi")
