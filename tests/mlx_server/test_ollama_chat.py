"""POST /api/chat: NDJSON message chunks, stream false, final statistics."""

import json

import httpx

from .conftest import MODEL_NAME, TinyTokenizer
from .test_ollama_generate import DURATIONS, is_rfc3339

MESSAGES = [{"role": "user", "content": "Tell me a story."}]
FINAL_FIELDS = {
    "model",
    "created_at",
    "message",
    "done",
    "done_reason",
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
}


def test_it_streams_message_chunks_by_default(
    client: httpx.Client, tiny_tokenizer: TinyTokenizer
) -> None:
    payload = {"model": MODEL_NAME, "messages": MESSAGES, "options": {"num_predict": 5}}
    with client.stream("POST", "/api/chat", json=payload) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        objects = [json.loads(line) for line in response.iter_lines() if line]
    for chunk in objects[:-1]:
        assert set(chunk) == {"model", "created_at", "message", "done"}
        assert chunk["message"]["role"] == "assistant"
        assert isinstance(chunk["message"]["content"], str)
        assert chunk["done"] is False
        assert is_rfc3339(chunk["created_at"])
    final = objects[-1]
    assert set(final) == FINAL_FIELDS
    assert final["message"] == {"role": "assistant", "content": ""}
    assert final["done"] is True and final["done_reason"] == "length"
    assert final["prompt_eval_count"] == tiny_tokenizer.count_chat(MESSAGES)
    assert final["eval_count"] == 5
    for field in DURATIONS:
        assert isinstance(final[field], int) and final[field] >= 0


def test_it_answers_in_one_object_when_stream_is_false(client: httpx.Client) -> None:
    payload = {
        "model": MODEL_NAME,
        "messages": MESSAGES,
        "options": {"num_predict": 8, "temperature": 0},
    }
    streamed = client.post("/api/chat", json=payload)
    text = "".join(json.loads(line)["message"]["content"] for line in streamed.text.splitlines())
    body = client.post("/api/chat", json={**payload, "stream": False}).json()
    assert set(body) == FINAL_FIELDS
    assert body["message"] == {"role": "assistant", "content": text}
    assert body["eval_count"] == 8


def test_it_loads_the_model_on_empty_messages(client: httpx.Client) -> None:
    body = client.post("/api/chat", json={"model": MODEL_NAME, "messages": []}).json()
    assert body["done_reason"] == "load"
    assert body["message"] == {"role": "assistant", "content": ""}
