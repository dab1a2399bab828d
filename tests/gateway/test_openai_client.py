"""The official `openai` client, unchanged, against the gateway, for each backend type."""

from __future__ import annotations

import openai
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["ollama", "openai", "mlx"])
def model(request, entry, ollama_url, openai_url) -> str:
    kind = request.param
    entry(f"{kind}-model", kind, ollama_url if kind == "ollama" else openai_url)
    return f"{kind}-model"


@pytest.fixture
def client(gateway, service_key) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=service_key, max_retries=0)


def test_it_lists_the_registrys_enabled_models(client, entry, ollama_url, openai_url):
    entry("phi3:mini", "mlx", openai_url)
    entry("llama3.1:8b", "ollama", ollama_url)
    assert [m.id for m in client.models.list()] == ["llama3.1:8b", "phi3:mini"]
    assert client.models.retrieve("phi3:mini").owned_by == "athena"


def test_it_completes_a_chat(client, model):
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], temperature=0
    )
    assert answer.model == model
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.content == "Hello, world!"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.completion_tokens == 4
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 4


def test_it_streams_a_chat_with_usage(client, model):
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello, world!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert {c.model for c in chunks} == {model}


def test_it_streams_a_chat_without_usage(client, model):
    chunks = list(
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello, world!"


def test_it_completes_a_prompt(client, model):
    answer = client.completions.create(model=model, prompt="Say hello", max_tokens=2)
    assert answer.object == "text_completion"
    assert answer.choices[0].text == "Hello,"
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage.completion_tokens == 2


def test_it_streams_a_completion(client, model):
    chunks = list(client.completions.create(model=model, prompt="Say hello", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "Hello, world!"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_it_answers_an_unknown_model_with_404_listing_the_models(client, model):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    error = caught.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert error["message"] == f"model 'nope' not found; available models: {model}"
