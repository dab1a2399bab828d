"""Both official clients through the gateway to the real MLX server with the tiny model."""

from __future__ import annotations

from collections.abc import Iterator

import ollama
import openai
import pytest

from tests.gateway.mlx_process import running_mlx_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def mlx_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_mlx_server(tmp_path_factory.mktemp("mlx") / "server.log") as url:
        yield url


@pytest.fixture
def tiny(entry, mlx_url) -> str:
    entry("tiny", "mlx", mlx_url, upstream_model="tiny-llama", max_tokens=8)
    return "tiny"


def test_an_ollama_client_reaches_the_mlx_server(gateway, service_key, tiny):
    client = ollama.Client(host=gateway, headers={"X-API-Key": service_key})
    answer = client.generate(model=tiny, prompt="Hello", options={"num_predict": 5, "seed": 1})
    assert answer.model == tiny and answer.done
    assert answer.eval_count == 5 and answer.done_reason == "length"
    assert answer.total_duration > 0 and answer.eval_duration > 0
    chunks = list(
        client.chat(model=tiny, messages=[{"role": "user", "content": "hi"}], stream=True)
    )
    # The route's max_tokens (8) applies; a token may decode to no text, so count tokens.
    assert chunks[-1].done and chunks[-1].eval_count == 8 and chunks[-1].done_reason == "length"
    assert all(c.message.content for c in chunks[:-1])


def test_an_openai_client_reaches_the_mlx_server(gateway, service_key, tiny):
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=service_key, max_retries=0)
    answer = client.chat.completions.create(
        model=tiny, messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert answer.model == tiny and answer.usage.completion_tokens == 4
    assert answer.choices[0].finish_reason == "length"
    chunks = list(
        client.completions.create(
            model=tiny,
            prompt="Once",
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage.completion_tokens == 3
