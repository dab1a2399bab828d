"""The official `openai` and `ollama` Python clients work against the server."""

import ollama
import openai
from openai.types.chat import ChatCompletionMessageParam

from .conftest import MODEL_NAME, ServerProcess, TinyTokenizer


def test_it_serves_the_openai_client(server: ServerProcess, tiny_tokenizer: TinyTokenizer) -> None:
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused")
    assert MODEL_NAME in [m.id for m in client.models.list()]
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Why is the sky blue?"}
    ]
    answer = client.chat.completions.create(
        model=MODEL_NAME,
        messages=messages,
        max_tokens=6,
        temperature=0,
    )
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == tiny_tokenizer.count_chat(
        [{"role": "user", "content": "Why is the sky blue?"}]
    )
    assert answer.usage.completion_tokens == 6
    stream = client.chat.completions.create(
        model=MODEL_NAME,
        messages=messages,
        max_tokens=6,
        temperature=0,
        stream=True,
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert streamed == answer.choices[0].message.content
    completion = client.completions.create(
        model=MODEL_NAME, prompt="hi", max_tokens=3, stop=["zzz"]
    )
    assert completion.usage is not None and completion.usage.completion_tokens == 3


def test_it_raises_openai_errors_the_client_understands(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
    try:
        client.completions.create(model="missing", prompt="hi", max_tokens=3)
    except openai.NotFoundError as exc:
        assert exc.status_code == 404
        assert MODEL_NAME in str(exc.message)
    else:
        raise AssertionError("expected NotFoundError")


def test_it_serves_the_ollama_client(server: ServerProcess) -> None:
    client = ollama.Client(host=server.base_url)
    assert MODEL_NAME in [m.model for m in client.list().models]
    answer = client.chat(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": "hi"}],
        options={"num_predict": 5, "temperature": 0},
    )
    assert answer.done and answer.done_reason == "length" and answer.eval_count == 5
    parts = list(
        client.generate(
            model=MODEL_NAME, prompt="hi", stream=True, options={"num_predict": 5, "temperature": 0}
        )
    )
    assert parts[-1].done and parts[-1].eval_count == 5
    assert "".join(p.response or "" for p in parts)
    assert client.show(MODEL_NAME).details.family == "llama"  # type: ignore[union-attr]
    assert any(m.model == MODEL_NAME for m in client.ps().models)
    try:
        client.generate(model="missing", prompt="hi")
    except ollama.ResponseError as exc:
        assert exc.status_code == 404
    else:
        raise AssertionError("expected ResponseError")
