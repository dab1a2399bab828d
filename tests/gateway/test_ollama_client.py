"""The official `ollama` client, unchanged, against the gateway, for each backend type."""

from __future__ import annotations

import ollama
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["ollama", "openai", "mlx"])
def model(request, entry, ollama_url, openai_url) -> str:
    """One entry per upstream kind: Ollama's protocol, OpenAI's, and MLX (OpenAI's, on /health)."""
    kind = request.param
    url = ollama_url if kind == "ollama" else openai_url
    entry(f"{kind}-model", kind, url)
    return f"{kind}-model"


@pytest.fixture
def client(gateway, service_key) -> ollama.Client:
    return ollama.Client(host=gateway, headers={"Authorization": f"Bearer {service_key}"})


def test_it_lists_the_registrys_enabled_models(client, entry, ollama_url, openai_url):
    entry("phi3:mini", "mlx", openai_url)
    entry("llama3.1:8b", "ollama", ollama_url)
    entry("old", "ollama", ollama_url, enabled=False)
    names = [m.model for m in client.list().models]
    assert names == ["llama3.1:8b", "phi3:mini"]


def test_it_generates(client, model):
    answer = client.generate(model=model, prompt="Say hello")
    assert answer.response == "Hello, world!"
    assert answer.model == model
    assert answer.done and answer.done_reason == "stop"
    assert answer.eval_count == 4 and answer.total_duration > 0


def test_it_streams_a_generation(client, model):
    chunks = list(client.generate(model=model, prompt="Say hello", stream=True))
    assert [c.response for c in chunks[:-1]] == ["Hello", ",", " world", "!"]
    assert all(c.model == model and not c.done for c in chunks[:-1])
    last = chunks[-1]
    assert last.done and last.done_reason == "stop" and last.response == ""
    assert last.eval_count == 4 and last.eval_duration > 0 and last.total_duration > 0


def test_it_chats(client, model):
    answer = client.chat(model=model, messages=[{"role": "user", "content": "hi"}])
    assert answer.message.role == "assistant"
    assert answer.message.content == "Hello, world!"
    assert answer.model == model and answer.done


def test_it_streams_a_chat(client, model):
    chunks = list(
        client.chat(model=model, messages=[{"role": "user", "content": "hi"}], stream=True)
    )
    assert "".join(c.message.content for c in chunks) == "Hello, world!"
    assert chunks[-1].done and chunks[-1].done_reason == "stop"
    assert chunks[-1].prompt_eval_count and chunks[-1].eval_count == 4


def test_it_shows_a_model_and_lists_it_as_running_once_used(client, model):
    shown = client.show(model)
    assert shown.details.family == model.split("-")[0]
    # A service key is no operator: the chain by model name and backend type only.
    assert f"# {model.split('-')[0]} {model}" in shown.modelfile
    assert "upstream" not in shown.modelfile and "127.0.0.1" not in shown.modelfile
    assert client.ps().models == []
    client.generate(model=model, prompt="hi")
    assert [m.model for m in client.ps().models] == [model]


def test_it_answers_an_unknown_model_with_404_listing_the_models(client, model):
    with pytest.raises(ollama.ResponseError) as caught:
        client.generate(model="nope", prompt="hi")
    assert caught.value.status_code == 404
    assert f"model 'nope' not found; available models: {model}" == caught.value.error
