"""Every target at capacity is overload, not failure: 503 / 429 with Retry-After, retried.

An upstream says it is at capacity with a 429, or a 503 with Retry-After (the MLX server's
"at capacity"). Ollama clients get 503, OpenAI clients 429 with a ``rate_limit_exceeded``
error (the status their SDKs retry), both with the soonest Retry-After; the targets' circuit
breakers stay closed and the metrics count overloads, not errors.
"""

from __future__ import annotations

import contextlib
import json
import re

import httpx
import pytest

from tests.gateway.mlx_process import running_mlx_server
from tests.gateway.scripted_upstream import Script

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
AT_CAPACITY = json.dumps({"error": {"message": "at capacity", "code": "overloaded"}}).encode()


@pytest.fixture
def full(script: Script) -> Script:
    script.status = 503
    script.headers = {"content-type": "application/json", "retry-after": "7"}
    script.chunks = [AT_CAPACITY]
    return script


@pytest.fixture
def http(gateway, auth):
    with httpx.Client(base_url=gateway, headers=auth, timeout=15) as client:
        yield client


@pytest.mark.parametrize("stream", [False, True])
def test_every_target_at_capacity_is_a_503_for_ollama_and_a_429_for_openai(http, entry, scripted_url, full, stream):  # fmt: skip
    entry("backup", "openai", scripted_url, upstream_model="b")
    entry("phi", "mlx", scripted_url, upstream_model="a", fallbacks=["backup"])
    for path, body in (("/api/chat", CHAT), ("/api/generate", {"prompt": "hi"})):
        response = http.post(path, json={"model": "phi", "stream": stream, **body})
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "7"
        assert "at capacity" in response.json()["error"]
    for path, body in (("/v1/chat/completions", CHAT), ("/v1/completions", {"prompt": "hi"})):
        response = http.post(path, json={"model": "phi", "stream": stream, **body})
        assert response.status_code == 429, response.text
        assert response.headers["retry-after"] == "7"
        error = response.json()["error"]
        assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert full.requests == 8  # both targets tried each time


def test_the_soonest_retry_after_wins_and_a_429_counts_too(http, entry, scripted_url, openai_url, openai_behavior, full):  # fmt: skip
    openai_behavior.status = 429  # no Retry-After: still at capacity
    full.headers["retry-after"] = "3"
    entry("backup", "openai", openai_url)
    entry("phi", "mlx", scripted_url, fallbacks=["backup"])
    response = http.post("/v1/chat/completions", json={"model": "phi", **CHAT})
    assert response.status_code == 429 and response.headers["retry-after"] == "3"


def test_the_openai_sdk_retries_an_overloaded_gateway(gateway, service_key, entry, scripted_url, full):  # fmt: skip
    import openai

    full.headers["retry-after"] = "0"
    entry("phi", "mlx", scripted_url)
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=service_key, max_retries=2)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="phi", **CHAT)
    assert full.requests == 3  # the first try and two retries


def test_overload_opens_no_circuit_and_is_no_error_in_the_metrics(http, entry, scripted_url, full):  # fmt: skip
    entry("backup", "openai", scripted_url, upstream_model="b")
    entry("phi", "mlx", scripted_url, upstream_model="a", fallbacks=["backup"])
    for _ in range(6):  # twice the breaker's threshold
        assert http.post("/api/generate", json={"model": "phi", "prompt": "hi"}).status_code == 503
    # A breaker opened by these would skip the primary: each request still reached both.
    assert full.requests == 12
    metrics = http.get("/metrics").text
    overloads = re.findall(r'^athena_upstream_overloads_total\{.*model="phi".*\} (\S+)$', metrics, re.M)  # fmt: skip
    assert sorted(float(v) for v in overloads) == [6.0, 6.0]  # each target's series
    assert not re.search(r'^athena_upstream_errors_total\{.*model="phi"', metrics, re.M)


def test_a_503_without_retry_after_is_a_failing_backend(http, entry, scripted_url, script):
    script.status = 503
    script.chunks = [b'{"error": "model crashed"}']
    entry("phi", "mlx", scripted_url)
    response = http.post("/v1/chat/completions", json={"model": "phi", **CHAT})
    assert response.status_code == 502, response.text
    assert "retry-after" not in response.headers


def test_the_real_mlx_server_at_capacity_is_a_503_and_a_429(http, entry, tmp_path):
    payload = {"model": "tiny-llama", "prompt": "hi", "max_tokens": 1900, "stream": True}
    options = ("--max-batch-size", "1", "--max-queue", "1")
    with running_mlx_server(tmp_path / "log", *options) as mlx_url:
        entry("tiny", "mlx", mlx_url, upstream_model="tiny-llama", max_tokens=8, timeout_seconds=30)
        with httpx.Client(base_url=mlx_url, timeout=30) as direct, contextlib.ExitStack() as held:
            # Fill it as tests/mlx_server/test_overload.py does: one decoding, one queued.
            running = held.enter_context(direct.stream("POST", "/v1/completions", json=payload))
            lines = running.iter_lines()  # keep it: dropping the iterator closes the stream
            next(lines)
            held.enter_context(direct.stream("POST", "/v1/completions", json=payload))
            ollama_style = http.post("/api/generate", json={"model": "tiny", "prompt": "hi"})
            openai_style = http.post("/v1/completions", json={"model": "tiny", "prompt": "hi"})
    assert ollama_style.status_code == 503, ollama_style.text
    assert int(ollama_style.headers["retry-after"]) >= 1
    assert openai_style.status_code == 429, openai_style.text
    assert openai_style.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(openai_style.headers["retry-after"]) >= 1
