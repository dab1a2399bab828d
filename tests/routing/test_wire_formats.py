"""Each backend kind speaks its real wire format, and the test servers match the real servers."""

import json
import re

import httpx
import pytest

from routing import Finish, GenerationRequest, Started, Target, TextDelta
from routing._backends import backend_class
from tests.routing.conftest import target

CREATED_AT = re.compile(
    r'^\{"model":"[^"]+","created_at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z",'
)


async def test_ollama_server_streams_go_encoded_ndjson_with_final_stats(ollama_url):
    async with httpx.AsyncClient() as client:
        r = await client.post(
            ollama_url + "/api/generate", json={"model": "llama3.2", "prompt": "a <b> & c"}
        )
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = r.text.split("\n")
    assert lines[-1] == ""  # every line, the last included, ends in \n
    first, last = lines[0], lines[-2]
    assert CREATED_AT.match(first)
    assert first.endswith('"response":"Hello","done":false}')
    keys = list(json.loads(last))
    assert keys == [
        "model",
        "created_at",
        "response",
        "done",
        "done_reason",
        "context",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ]
    assert all(isinstance(json.loads(last)[k], int) for k in keys[6:])


async def test_ollama_chat_final_chunk_has_done_reason_before_done(ollama_url, ollama_behavior):
    ollama_behavior.words = ("<&>",)
    async with httpx.AsyncClient() as client:
        r = await client.post(
            ollama_url + "/api/chat",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": False},
        )
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert not r.text.endswith("\n")
    assert (
        '"message":{"role":"assistant","content":"\\u003c\\u0026\\u003e"},"done_reason":"stop","done":true,"total_duration":'
        in r.text
    )


async def test_openai_server_streams_sse_with_usage_and_done(openai_url):
    async with httpx.AsyncClient() as client:
        r = await client.post(
            openai_url + "/v1/chat/completions",
            json={
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [e for e in r.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


async def test_the_sdks_parse_the_test_servers(ollama_url, openai_url):
    import ollama
    import openai

    o = ollama.AsyncClient(host=ollama_url)
    answer = await o.generate(model="llama3.2", prompt="hi")
    assert (
        answer.response == "Hello, world!"
        and answer.done_reason == "stop"
        and answer.eval_count == 4
    )
    chunks = [
        c
        async for c in await o.chat(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
    ]
    assert "".join(c.message.content for c in chunks) == "Hello, world!"
    oa = openai.AsyncOpenAI(base_url=openai_url + "/v1", api_key="x")
    completion = await oa.completions.create(model="m", prompt="hi", max_tokens=2)
    assert (
        completion.choices[0].text == "Hello," and completion.choices[0].finish_reason == "length"
    )
    stream = await oa.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    parts = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in parts if c.choices) == "Hello, world!"
    assert parts[-1].usage.completion_tokens == 4
    await oa.close()


@pytest.mark.parametrize("kind", ["ollama", "mlx", "openai"])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("chat", [False, True])
async def test_each_kind_yields_text_then_one_finish(kind, stream, chat, ollama_url, openai_url):
    url = ollama_url if kind == "ollama" else openai_url
    t = Target.from_json(target(kind, url, "up"), model="alias")
    kwargs = {"messages": [{"role": "user", "content": "x"}]} if chat else {"prompt": "x"}
    request = GenerationRequest.build(model="alias", stream=stream, **kwargs)
    async with httpx.AsyncClient() as client:
        events = [e async for e in backend_class(kind)(client).events(t, request)]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello, world!"
    assert isinstance(events[-1], Finish) and sum(isinstance(e, Finish) for e in events) == 1
    assert events[-1].finish_reason == "stop"
    assert events[-1].completion_tokens == 4 and events[-1].prompt_tokens >= 1


async def test_ollama_request_carries_options_and_keeps_temperature_zero(
    make_router, admin_state, ollama_url, ollama_behavior
):
    admin_state.set_route("phi3:mini-classify", target("ollama", ollama_url, "phi3:mini"))
    router = make_router()
    await router.generate(
        model="phi3:mini-classify",
        prompt="hi",
        temperature=0,
        max_tokens=7,
        top_p=0.5,
        stop=["\n"],
        seed=42,
    )
    await router.chat(
        model="phi3:mini-classify", messages=[{"role": "user", "content": "x"}], system="be brief"
    )
    gen, chat = ollama_behavior.requests
    assert gen == {
        "model": "phi3:mini",
        "prompt": "hi",
        "stream": False,
        "options": {"temperature": 0.0, "num_predict": 7, "top_p": 0.5, "stop": ["\n"], "seed": 42},
    }
    assert chat["messages"][0] == {"role": "system", "content": "be brief"}
    assert chat["options"] == {"temperature": 0.7, "num_predict": 2048}


async def test_openai_request_carries_parameters_and_asks_for_usage(
    make_router, admin_state, openai_url, openai_behavior
):
    admin_state.set_route(
        "synth", target("mlx", openai_url, "phi3-mini-4bit", max_tokens=99, temperature_default=0.2)
    )
    router = make_router()
    result = await router.generate(model="synth", prompt="hi", temperature=0.0)
    async for _ in router.stream_chat(
        model="synth", messages=[{"role": "user", "content": "x"}], seed=1
    ):
        pass
    gen, chat = openai_behavior.requests
    assert gen == {
        "model": "phi3-mini-4bit",
        "prompt": "hi",
        "max_tokens": 99,
        "temperature": 0.0,
        "stream": False,
    }
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    assert chat["temperature"] == 0.2 and chat["seed"] == 1
    assert (
        result["backend"] == "mlx"
        and result["upstream_model"] == "phi3-mini-4bit"
        and result["model"] == "synth"
    )


async def test_generate_returns_the_plans_fields_and_routing_stats(
    make_router, admin_state, ollama_url
):
    admin_state.set_route("m", target("ollama", ollama_url, "llama3.2", entry_id=7))
    result = await make_router().generate(model="m", prompt="hi", temperature=0.7)
    assert result["response"] == "Hello, world!"
    assert (result["backend"], result["model"], result["done"]) == ("ollama", "m", True)
    assert result["eval_count"] == 4 and result["prompt_eval_count"] >= 1
    assert isinstance(result["total_duration"], int) and result["total_duration"] > 0
    assert (
        result["tokens_per_sec"] > 0 and result["latency_ms"] > 0 and result["ttft_ms"] is not None
    )
    assert (
        result["endpoint_url"] == ollama_url
        and result["entry_id"] == 7
        and result["fallback"] is False
    )


async def test_stream_yields_text_as_it_arrives_and_ends_with_the_stats(
    make_router, admin_state, ollama_url, ollama_behavior
):
    ollama_behavior.chunk_delay = 0.01
    admin_state.set_route("m", target("ollama", ollama_url, "llama3.2"))
    stream = make_router().stream(model="m", prompt="hi")
    pieces = [text async for text in stream]
    assert pieces == ["Hello", ",", " world", "!"]
    assert stream.result["response"] == "Hello, world!" and stream.result["done_reason"] == "stop"
    assert 0 < stream.result["ttft_ms"] < stream.result["latency_ms"]


async def test_events_give_a_gateway_typed_deltas_and_finish(make_router, admin_state, openai_url):
    admin_state.set_route("m", target("openai", openai_url, "gpt"))
    router = make_router()
    events = [e async for e in router.stream(model="m", prompt="hi", max_tokens=2).events()]
    assert type(events[0]) is Started and events[0].target.endpoint_url == openai_url
    assert [e.text for e in events[1:-1]] == ["Hello", ","]
    finish = events[-1]
    assert (finish.finish_reason, finish.completion_tokens, finish.backend_type) == (
        "length",
        2,
        "openai",
    )


async def test_auto_in_a_routes_file_expands_to_mlx_then_ollama(
    make_router, tmp_path, openai_url, ollama_url, openai_behavior
):
    (tmp_path / "routes.yaml").write_text(
        f"routes:\n  - model: llama3.1:8b\n    targets:\n"
        f"      - {{backend_type: auto, endpoint_url: '{openai_url}', upstream_model: llama3.1:8b}}\n"
    )
    openai_behavior.status = 503
    router = make_router(None, routes_file=tmp_path / "routes.yaml", default_ollama_url=ollama_url)
    route = await router.route("llama3.1:8b")
    assert [(t.backend_type, t.endpoint_url) for t in route.targets] == [
        ("mlx", openai_url),
        ("ollama", ollama_url),
    ]
    result = await router.generate(model="llama3.1:8b", prompt="hi")
    assert result["backend"] == "ollama" and result["fallback"] is True


async def test_an_auto_chain_from_the_admin_is_followed_in_order(
    make_router, admin_state, openai_url, ollama_url, openai_behavior, ollama_behavior
):
    admin_state.set_route(
        "llama3.1:8b",
        target("mlx", openai_url, "mlx-community/Llama-3.1-8B-4bit"),
        target("ollama", ollama_url, "llama3.1:8b"),
    )
    openai_behavior.status = 500
    result = await make_router().generate(model="llama3.1:8b", prompt="hi")
    assert openai_behavior.requests[0]["model"] == "mlx-community/Llama-3.1-8B-4bit"
    assert ollama_behavior.requests[0]["model"] == "llama3.1:8b"
    assert result["upstream_model"] == "llama3.1:8b" and result["fallback"] is True


async def test_probe_lists_models(make_router, ollama_url, openai_url, dead_url):
    router = make_router(None)
    ok = await router.backend("ollama").probe(ollama_url)
    assert ok.ok and ok.models == ("llama3.2:latest",)
    assert (await router.backend("openai").probe(openai_url)).models == ("test-model",)
    assert (await router.backend("mlx").probe(openai_url)).ok
    down = await router.backend("ollama").probe(dead_url)
    assert not down.ok and down.error_kind == "connect"
