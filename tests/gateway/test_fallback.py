"""Fallback is transparent until the first content byte, never after; nothing hangs."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import ollama
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.upstreams import serve_in_thread

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def http(gateway, auth):
    with httpx.Client(base_url=gateway, headers=auth, timeout=20) as client:
        yield client


@pytest.fixture
def chain(entry, ollama_url, openai_url):
    """`phi` served by MLX (the OpenAI-protocol server), falling back to Ollama."""
    entry("backup", "ollama", ollama_url)
    entry("phi", "mlx", openai_url, fallbacks=["backup"])
    return "phi"


def test_a_dead_primary_falls_back_before_the_request(http, entry, dead_url, ollama_url):
    entry("backup", "ollama", ollama_url)
    entry("phi", "mlx", dead_url, fallbacks=["backup"])
    for stream in (False, True):
        response = http.post("/api/chat", json={"model": "phi", "stream": stream, **CHAT})
        assert response.status_code == 200
        assert response.headers["x-athena-backend"] == "ollama"  # not mlx: it fell back
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert "".join(line["message"]["content"] for line in lines) == "Hello, world!"


def test_a_primary_failing_after_200_but_before_content_falls_back(
    http, chain, openai_behavior, ollama_url
):
    openai_behavior.fail_before_content = True
    for path, body in (("/api/generate", {"prompt": "hi"}), ("/v1/chat/completions", CHAT)):
        response = http.post(path, json={"model": chain, "stream": True, **body})
        assert response.status_code == 200
        assert response.headers["x-athena-backend"] == "ollama"  # not mlx: it fell back
        assert "Hello" in response.text and "error" not in response.text


def test_a_primary_failing_with_503_falls_back(http, chain, openai_behavior, ollama_behavior):
    openai_behavior.status = 503
    response = http.post("/v1/completions", json={"model": chain, "prompt": "hi"})
    assert response.status_code == 200
    assert response.json()["choices"][0]["text"] == "Hello, world!"
    assert len(ollama_behavior.requests) == 1


def test_an_ollama_stream_cut_mid_way_ends_with_an_error_line(
    gateway, service_key, chain, openai_behavior, ollama_behavior
):
    openai_behavior.cut_after = 2
    client = ollama.Client(host=gateway, headers={"X-API-Key": service_key}, timeout=20)
    received = []
    with pytest.raises(ollama.ResponseError) as caught:
        for chunk in client.generate(model=chain, prompt="hi", stream=True):
            received.append(chunk.response)
    assert received == ["Hello", ","]
    assert "stream interrupted after 6 characters" in caught.value.error
    assert ollama_behavior.requests == []  # never falls back once content was sent


def test_an_openai_stream_cut_mid_way_ends_with_an_sse_error_event(
    gateway, service_key, chain, openai_behavior, ollama_behavior
):
    openai_behavior.cut_after = 2
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=service_key, max_retries=0)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model=chain, stream=True, **CHAT):
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "Hello", ","]
    assert "stream interrupted" in caught.value.message
    assert caught.value.body["code"] == "stream_interrupted"
    assert ollama_behavior.requests == []


def _stalling_app():
    """An OpenAI-protocol upstream that sends one piece of text, then goes silent."""

    async def completions(request: Request) -> StreamingResponse:
        async def events():
            chunk = {"id": "c", "object": "text_completion", "model": "m",
                     "choices": [{"text": "a", "index": 0, "finish_reason": None}]}  # fmt: skip
            yield f"data: {json.dumps(chunk)}\n\n"
            await asyncio.sleep(30)

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/completions", completions, methods=["POST"])])


def test_a_stream_that_stalls_after_content_ends_with_an_error_instead_of_hanging(http, entry):
    with serve_in_thread(_stalling_app()) as upstream:
        entry("slow", "mlx", upstream.url, timeout_seconds=1)
        started = time.monotonic()
        response = http.post("/api/generate", json={"model": "slow", "prompt": "hi"})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0]["response"] == "a"
    assert "timed out" in lines[-1]["error"]
    assert time.monotonic() - started < 10


def test_targets_failing_in_different_ways_are_a_502_with_each_reason(gateway, operator_auth, entry, dead_url, openai_url, openai_behavior):  # fmt: skip
    # An operator reads each target's endpoint and the upstream's own words.
    http = httpx.Client(base_url=gateway, headers=operator_auth, timeout=20)
    openai_behavior.status = 500
    openai_behavior.error_message = "GPU on fire"
    entry("backup", "mlx", openai_url)
    entry("phi", "ollama", dead_url, fallbacks=["backup"])
    ollama_style = http.post("/api/generate", json={"model": "phi", "prompt": "hi"})
    assert ollama_style.status_code == 502
    message = ollama_style.json()["error"]
    assert "all 2 targets failed for model 'phi'" in message
    assert f"1. ollama {dead_url} (phi-upstream): cannot connect" in message
    assert f"2. mlx {openai_url} (backup-upstream): HTTP 500: GPU on fire" in message
    openai_style = http.post("/v1/chat/completions", json={"model": "phi", **CHAT})
    assert openai_style.status_code == 502
    error = openai_style.json()["error"]
    assert error["type"] == "server_error" and error["code"] == "all_targets_failed"
    assert "GPU on fire" in error["message"] and dead_url in error["message"]
