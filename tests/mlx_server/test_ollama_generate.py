"""POST /api/generate: NDJSON by default, stream false, final statistics, load/unload."""

import json
from datetime import datetime

import httpx

from .conftest import MODEL_NAME, TinyTokenizer

FINAL_FIELDS = {
    "model",
    "created_at",
    "response",
    "done",
    "done_reason",
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
}
DURATIONS = ["total_duration", "load_duration", "prompt_eval_duration", "eval_duration"]


def is_rfc3339(value: str) -> bool:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


def test_it_streams_ndjson_by_default(client: httpx.Client, tiny_tokenizer: TinyTokenizer) -> None:
    payload = {"model": MODEL_NAME, "prompt": "hi", "options": {"num_predict": 6, "temperature": 0}}
    with client.stream("POST", "/api/generate", json=payload) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        objects = [json.loads(line) for line in response.iter_lines() if line]
    for chunk in objects[:-1]:
        assert set(chunk) == {"model", "created_at", "response", "done"}
        assert chunk["done"] is False
        assert is_rfc3339(chunk["created_at"])
    final = objects[-1]
    assert set(final) == FINAL_FIELDS | {"context"}
    assert final["done"] is True
    assert final["response"] == ""
    assert final["done_reason"] == "length"
    assert final["eval_count"] == 6
    for field in DURATIONS:
        assert isinstance(final[field], int) and final[field] >= 0
    assert final["total_duration"] >= final["eval_duration"] > 0
    # Not raw: the prompt went through the chat template as a user message.
    assert final["prompt_eval_count"] == tiny_tokenizer.count_chat(
        [{"role": "user", "content": "hi"}]
    )
    assert isinstance(final["context"], list) and all(isinstance(t, int) for t in final["context"])
    assert len(final["context"]) == final["prompt_eval_count"] + final["eval_count"]


def test_it_answers_in_one_object_when_stream_is_false(client: httpx.Client) -> None:
    payload = {
        "model": MODEL_NAME,
        "prompt": "hi",
        "stream": False,
        "options": {"num_predict": 6, "temperature": 0},
    }
    streamed = client.post("/api/generate", json={**payload, "stream": True})
    text = "".join(json.loads(line)["response"] for line in streamed.text.splitlines())
    response = client.post("/api/generate", json=payload)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == FINAL_FIELDS | {"context"}
    assert body["response"] == text
    assert body["eval_count"] == 6


def test_it_encodes_raw_prompts_without_the_template_and_returns_no_context(
    client: httpx.Client, tiny_tokenizer: TinyTokenizer
) -> None:
    body = client.post(
        "/api/generate",
        json={
            "model": MODEL_NAME,
            "prompt": "Once upon a time",
            "raw": True,
            "stream": False,
            "options": {"num_predict": 3},
        },
    ).json()
    assert body["prompt_eval_count"] == tiny_tokenizer.count("Once upon a time")
    assert "context" not in body


def test_it_loads_a_model_on_an_empty_prompt(client: httpx.Client) -> None:
    body = client.post("/api/generate", json={"model": MODEL_NAME}).json()
    assert body["done"] is True and body["response"] == "" and body["done_reason"] == "load"
    assert MODEL_NAME in client.get("/health").json()["models_loaded"]


def test_it_fills_the_context_when_num_predict_is_negative_one(
    client: httpx.Client, tiny_tokenizer: TinyTokenizer
) -> None:
    prompt = "word " * 1000
    body = client.post(
        "/api/generate",
        json={
            "model": MODEL_NAME,
            "prompt": prompt,
            "raw": True,
            "stream": False,
            "options": {"num_predict": -1, "temperature": 0},
        },
    ).json()
    assert body["done_reason"] == "length"
    assert body["prompt_eval_count"] + body["eval_count"] == tiny_tokenizer.context_length


def test_it_puts_the_system_prompt_into_the_template(
    client: httpx.Client, tiny_tokenizer: TinyTokenizer
) -> None:
    body = client.post(
        "/api/generate",
        json={
            "model": MODEL_NAME,
            "prompt": "hi",
            "system": "Be brief.",
            "stream": False,
            "options": {"num_predict": 2},
        },
    ).json()
    expected = tiny_tokenizer.count_chat(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    )
    assert body["prompt_eval_count"] == expected


def test_it_continues_from_a_returned_context(client: httpx.Client) -> None:
    options = {"num_predict": 4, "temperature": 0}
    first = client.post(
        "/api/generate",
        json={"model": MODEL_NAME, "prompt": "hi", "stream": False, "options": options},
    ).json()
    second = client.post(
        "/api/generate",
        json={
            "model": MODEL_NAME,
            "prompt": "and then?",
            "context": first["context"],
            "stream": False,
            "options": options,
        },
    ).json()
    alone = client.post(
        "/api/generate",
        json={"model": MODEL_NAME, "prompt": "and then?", "stream": False, "options": options},
    ).json()
    # The new turn is encoded without a second BOS and appended to the old context.
    assert second["prompt_eval_count"] == len(first["context"]) + alone["prompt_eval_count"] - 1
    assert second["context"][: len(first["context"])] == first["context"]
