"""POST /v1/chat/completions: chat template, fields, usage, streaming."""

import json

import httpx

from .conftest import MODEL_NAME, TinyTokenizer, sse_events, usage_counts

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Why is the sky blue?"},
]


def test_it_answers_a_chat_with_openai_fields(
    client: httpx.Client, tiny_tokenizer: TinyTokenizer
) -> None:
    response = client.post(
        "/v1/chat/completions",
        json={"model": MODEL_NAME, "messages": MESSAGES, "max_tokens": 9, "temperature": 0},
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert set(choice) == {"index", "message", "logprobs", "finish_reason"}
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] == "length"
    prompt_tokens = tiny_tokenizer.count_chat(MESSAGES)
    assert usage_counts(body["usage"]) == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 9,
        "total_tokens": prompt_tokens + 9,
    }


def test_it_streams_chat_deltas_ending_with_done(client: httpx.Client) -> None:
    payload = {"model": MODEL_NAME, "messages": MESSAGES, "max_tokens": 10, "temperature": 0}
    whole = client.post("/v1/chat/completions", json=payload).json()
    with client.stream(
        "POST", "/v1/chat/completions", json={**payload, "stream": True}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(list(response.iter_lines()))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]


def test_it_accepts_content_as_a_list_of_text_parts(client: httpx.Client) -> None:
    as_parts = [{"role": "user", "content": [{"type": "text", "text": "Why is the sky blue?"}]}]
    response = client.post(
        "/v1/chat/completions",
        json={"model": MODEL_NAME, "messages": as_parts, "max_tokens": 5, "temperature": 0},
    )
    plain = client.post(
        "/v1/chat/completions",
        json={"model": MODEL_NAME, "messages": MESSAGES[1:], "max_tokens": 5, "temperature": 0},
    )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"] == plain.json()["choices"][0]["message"]
