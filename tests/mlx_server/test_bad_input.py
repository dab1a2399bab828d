"""Bad requests get a clear 4xx naming the field, and the server keeps serving."""

import httpx
import pytest

from .conftest import MODEL_NAME, TinyTokenizer

COMPLETION = {"model": MODEL_NAME, "prompt": "hi", "max_tokens": 4}
CHAT = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def openai_error(response: httpx.Response, status: int, param: str | None) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert isinstance(error["message"], str) and error["message"]
    return str(error["message"])


@pytest.fixture(autouse=True)
def still_serving(client: httpx.Client):  # type: ignore[no-untyped-def]
    """After each bad request, a good one must still succeed."""
    yield
    response = client.post("/v1/completions", json=COMPLETION)
    assert response.status_code == 200
    assert response.json()["usage"]["completion_tokens"] == 4


def test_it_rejects_malformed_json(client: httpx.Client) -> None:
    response = client.post(
        "/v1/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert "JSON" in openai_error(response, 400, None)
    ollama = client.post("/api/generate", content=b"[1, 2")
    assert ollama.status_code == 400 and "JSON" in ollama.json()["error"]


def test_it_rejects_a_body_that_is_not_an_object(client: httpx.Client) -> None:
    openai_error(client.post("/v1/completions", json=[1, 2]), 400, None)


def test_it_requires_a_prompt(client: httpx.Client) -> None:
    openai_error(client.post("/v1/completions", json={"model": MODEL_NAME}), 400, "prompt")


def test_it_requires_messages(client: httpx.Client) -> None:
    openai_error(client.post("/v1/chat/completions", json={"model": MODEL_NAME}), 400, "messages")
    ollama = client.post("/api/chat", json={"model": MODEL_NAME})
    assert ollama.status_code == 400 and "messages" in ollama.json()["error"]


def test_it_requires_a_model(client: httpx.Client) -> None:
    openai_error(client.post("/v1/completions", json={"prompt": "hi"}), 400, "model")
    ollama = client.post("/api/generate", json={"prompt": "hi"})
    assert ollama.status_code == 400 and "model" in ollama.json()["error"]


def test_it_rejects_a_bad_message_role(client: httpx.Client) -> None:
    bad = {**CHAT, "messages": [{"role": "wizard", "content": "hi"}]}
    openai_error(client.post("/v1/chat/completions", json=bad), 400, "messages[0].role")


@pytest.mark.parametrize("value", [-1, 0, 1.5, "ten"])
def test_it_rejects_a_max_tokens_that_is_not_a_positive_integer(
    client: httpx.Client, value: object
) -> None:
    openai_error(
        client.post("/v1/completions", json={**COMPLETION, "max_tokens": value}), 400, "max_tokens"
    )


def test_it_rejects_a_max_tokens_beyond_the_context(client: httpx.Client) -> None:
    response = client.post("/v1/completions", json={**COMPLETION, "max_tokens": 10**6})
    assert "context" in openai_error(response, 400, "max_tokens")


@pytest.mark.parametrize("value", [-0.1, 2.5, "hot"])
def test_it_rejects_a_temperature_out_of_range(client: httpx.Client, value: object) -> None:
    openai_error(
        client.post("/v1/completions", json={**COMPLETION, "temperature": value}),
        400,
        "temperature",
    )
    ollama = client.post(
        "/api/generate",
        json={"model": MODEL_NAME, "prompt": "hi", "options": {"temperature": value}},
    )
    assert ollama.status_code == 400 and "options.temperature" in ollama.json()["error"]


def test_it_rejects_top_p_out_of_range(client: httpx.Client) -> None:
    openai_error(client.post("/v1/completions", json={**COMPLETION, "top_p": 1.5}), 400, "top_p")


def test_it_rejects_a_stop_that_is_not_text(client: httpx.Client) -> None:
    openai_error(client.post("/v1/completions", json={**COMPLETION, "stop": [1]}), 400, "stop")


def test_it_rejects_a_bad_keep_alive(client: httpx.Client) -> None:
    response = client.post(
        "/api/generate", json={"model": MODEL_NAME, "prompt": "hi", "keep_alive": "soon"}
    )
    assert response.status_code == 400 and "keep_alive" in response.json()["error"]


def test_it_answers_an_unknown_model_with_404_listing_models(client: httpx.Client) -> None:
    message = openai_error(
        client.post("/v1/completions", json={**COMPLETION, "model": "gpt-9"}), 404, "model"
    )
    assert "gpt-9" in message and MODEL_NAME in message
    ollama = client.post("/api/chat", json={**CHAT, "model": "gpt-9"})
    assert ollama.status_code == 404 and MODEL_NAME in ollama.json()["error"]


def test_it_rejects_a_prompt_longer_than_the_context(
    client: httpx.Client, tiny_tokenizer: TinyTokenizer
) -> None:
    prompt = "the quick brown fox " * 800
    assert tiny_tokenizer.count(prompt) > tiny_tokenizer.context_length
    response = client.post("/v1/completions", json={**COMPLETION, "prompt": prompt})
    assert "context" in openai_error(response, 400, "prompt")
    assert response.json()["error"]["code"] == "context_length_exceeded"
    chat = client.post(
        "/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": prompt}]}
    )
    openai_error(chat, 400, "messages")
    ollama = client.post("/api/generate", json={"model": MODEL_NAME, "prompt": prompt})
    assert ollama.status_code == 400 and "context" in ollama.json()["error"]


def test_it_rejects_n_greater_than_one(client: httpx.Client) -> None:
    openai_error(client.post("/v1/completions", json={**COMPLETION, "n": 2}), 400, "n")


def test_it_rejects_features_it_does_not_implement_instead_of_ignoring_them(
    client: httpx.Client,
) -> None:
    functions = [{"name": "f", "parameters": {}}]  # the legacy form of tools
    response = client.post("/v1/chat/completions", json={**CHAT, "functions": functions})
    openai_error(response, 400, "functions")
    images = [{"role": "user", "content": "what is this?", "images": ["aGVsbG8="]}]
    chat = client.post("/api/chat", json={"model": MODEL_NAME, "messages": images})
    assert chat.status_code == 400 and "messages[0].images" in chat.json()["error"]
