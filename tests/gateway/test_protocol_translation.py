"""Any client protocol reaches any backend: field by field, on the wire (raw HTTP)."""

from __future__ import annotations

import json
import re

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
GENERATE_FINAL = [
    "model", "created_at", "response", "done", "done_reason", "total_duration", "load_duration",
    "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration",
]  # fmt: skip
CHAT_FINAL = [
    "model", "created_at", "message", "done_reason", "done", "total_duration", "load_duration",
    "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration",
]  # fmt: skip
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


@pytest.fixture
def http(gateway, auth):
    with httpx.Client(base_url=gateway, headers=auth, timeout=10) as client:
        yield client


@pytest.fixture
def via_openai(entry, openai_url) -> str:
    entry("phi3:mini", "mlx", openai_url, upstream_model="phi3-mini-4bit")
    return "phi3:mini"


@pytest.fixture
def via_ollama(entry, ollama_url) -> str:
    entry("llama", "ollama", ollama_url, upstream_model="llama3.1:8b")
    return "llama"


def test_ollama_generate_from_an_openai_upstream_fills_the_final_stats_in_ns(http, via_openai):
    response = http.post(
        "/api/generate", json={"model": via_openai, "prompt": "hi", "stream": False}
    )
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert list(body) == GENERATE_FINAL
    assert body["model"] == "phi3:mini" and body["response"] == "Hello, world!"
    assert RFC3339_NANO.match(body["created_at"])
    assert all(isinstance(body[k], int) for k in DURATIONS)
    assert body["total_duration"] >= body["eval_duration"] > 0
    assert (body["eval_count"], body["done_reason"]) == (4, "stop")


def test_ollama_stream_from_an_openai_upstream_is_ndjson_chunk_by_chunk(http, via_openai):
    with http.stream("POST", "/api/chat", json={"model": via_openai, "messages": [{"role": "user", "content": "hi"}]}) as response:  # fmt: skip
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [line["message"]["content"] for line in lines] == ["Hello", ",", " world", "!", ""]
    assert all(list(line) == ["model", "created_at", "message", "done"] for line in lines[:-1])
    assert list(lines[-1]) == CHAT_FINAL
    assert lines[-1]["prompt_eval_duration"] > 0 and lines[-1]["eval_duration"] > 0
    assert lines[-1]["total_duration"] >= lines[-1]["prompt_eval_duration"]


def test_ollama_from_an_ollama_upstream_passes_its_stats_through(http, via_ollama, ollama_behavior):
    body = http.post(
        "/api/generate",
        json={"model": via_ollama, "prompt": "hi", "stream": False, "options": {"num_predict": 2}},
    ).json()
    assert body["model"] == "llama"  # the upstream answered as llama3.1:8b
    assert (body["response"], body["done_reason"], body["eval_count"]) == ("Hello,", "length", 2)
    assert ollama_behavior.requests[-1]["options"]["num_predict"] == 2
    assert ollama_behavior.requests[-1]["model"] == "llama3.1:8b"


def test_ollama_output_is_encoded_like_go(http, via_openai, openai_behavior):
    openai_behavior.words = ("<b>", " & ", "é")
    response = http.post(
        "/api/generate", json={"model": via_openai, "prompt": "hi", "stream": False}
    )
    assert '"response":"\\u003cb\\u003e \\u0026 é"' in response.text


def test_openai_chat_from_an_ollama_upstream_has_usage_and_finish_reason(http, via_ollama):
    response = http.post(
        "/v1/chat/completions",
        json={
            "model": via_ollama,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2,
        },
    )
    body = response.json()
    assert response.headers["content-type"] == "application/json"
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "llama"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello,", "refusal": None},
            "logprobs": None,
            "finish_reason": "length",
        }
    ]
    usage = body["usage"]
    assert usage["completion_tokens"] == 2 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + 2


def test_openai_stream_from_an_ollama_upstream_is_sse_ending_in_done(http, via_ollama):
    request = {
        "model": via_ollama,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with http.stream("POST", "/v1/chat/completions", json=request) as response:
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:5]] == ["Hello", ",", " world", "!"]  # fmt: skip
    assert chunks[5]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}  # fmt: skip
    assert all(c["usage"] is None for c in chunks[:-1]) and chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    assert len({c["id"] for c in chunks}) == 1 and {c["model"] for c in chunks} == {"llama"}


def test_every_response_carries_the_backend_and_the_overhead(http, via_openai, openai_url):
    answers = [
        http.post("/api/generate", json={"model": via_openai, "prompt": "hi", "stream": False}),
        http.post("/api/generate", json={"model": via_openai, "prompt": "hi"}),
        http.post("/v1/completions", json={"model": via_openai, "prompt": "hi"}),
    ]
    for response in answers:
        assert response.headers["x-athena-backend"] == "mlx"  # the URL is for operators
        assert float(response.headers["x-athena-overhead-ms"]) >= 0
    for response in (http.get("/api/tags"), http.get("/v1/models"), http.get("/")):
        assert response.headers["x-athena-backend"] == "gateway"
        assert float(response.headers["x-athena-overhead-ms"]) >= 0
    missing = http.post("/api/generate", json={"model": "nope", "prompt": "hi"})
    assert missing.headers["x-athena-backend"] == "none"
    assert float(missing.headers["x-athena-overhead-ms"]) >= 0


def test_sampling_parameters_reach_the_upstream_including_zero(http, via_openai, openai_behavior):
    http.post(
        "/api/generate",
        json={
            "model": via_openai,
            "prompt": "hi",
            "stream": False,
            "system": "Be brief.",
            "options": {
                "temperature": 0,
                "top_p": 0.5,
                "seed": 7,
                "stop": ["\n"],
                "num_predict": 9,
            },
        },
    )
    sent = openai_behavior.requests[-1]
    assert sent["model"] == "phi3-mini-4bit"
    assert (sent["temperature"], sent["top_p"], sent["seed"], sent["stop"], sent["max_tokens"]) == (
        0,
        0.5,
        7,
        ["\n"],
        9,
    )
    assert sent["prompt"].startswith("Be brief.")


def test_ollama_root_version_and_load_answers(http, via_ollama, ollama_behavior):
    assert http.get("/").text == "Ollama is running"
    assert http.get("/api/version").json() == {"version": "0.6.3"}
    loaded = http.post("/api/generate", json={"model": via_ollama}).json()
    assert (loaded["done"], loaded["done_reason"], loaded["response"]) == (True, "load", "")
    assert ollama_behavior.requests == []  # nothing to generate: the upstream is not called
