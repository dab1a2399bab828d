"""POST /v1/completions: fields, usage, finish_reason, streaming."""

import json

import httpx

from .conftest import MODEL_NAME, TinyTokenizer, sse_events, usage_counts

PROMPT = "Why is the sky blue?"


def test_it_completes_a_prompt_with_openai_fields(
    client: httpx.Client, tiny_tokenizer: TinyTokenizer
) -> None:
    response = client.post(
        "/v1/completions",
        json={"model": MODEL_NAME, "prompt": PROMPT, "max_tokens": 12, "temperature": 0},
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["object"] == "text_completion"
    assert body["id"].startswith("cmpl-")
    assert isinstance(body["created"], int)
    assert body["model"] == MODEL_NAME
    (choice,) = body["choices"]
    assert set(choice) == {"index", "text", "logprobs", "finish_reason"}
    assert choice["index"] == 0
    assert isinstance(choice["text"], str) and choice["text"]
    assert choice["finish_reason"] == "length"
    assert usage_counts(body["usage"]) == {
        "prompt_tokens": tiny_tokenizer.count(PROMPT),
        "completion_tokens": 12,
        "total_tokens": tiny_tokenizer.count(PROMPT) + 12,
    }


def test_it_streams_sse_chunks_ending_with_done(client: httpx.Client) -> None:
    payload = {"model": MODEL_NAME, "prompt": PROMPT, "max_tokens": 10, "temperature": 0}
    whole = client.post("/v1/completions", json=payload).json()["choices"][0]["text"]
    with client.stream("POST", "/v1/completions", json={**payload, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(list(response.iter_lines()))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks:
        assert set(chunk) >= {"id", "object", "created", "model", "choices"}
        assert chunk["object"] == "text_completion"
        assert set(chunk["choices"][0]) == {"index", "text", "logprobs", "finish_reason"}
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole
    assert len({c["id"] for c in chunks}) == 1


def test_it_reports_usage_in_a_final_stream_chunk_when_asked(
    client: httpx.Client, tiny_tokenizer: TinyTokenizer
) -> None:
    payload = {
        "model": MODEL_NAME,
        "prompt": PROMPT,
        "max_tokens": 7,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with client.stream("POST", "/v1/completions", json=payload) as response:
        events = sse_events(list(response.iter_lines()))
    usage_chunk = json.loads(events[-2])
    assert usage_chunk["choices"] == []
    assert usage_counts(usage_chunk["usage"]) == {
        "prompt_tokens": tiny_tokenizer.count(PROMPT),
        "completion_tokens": 7,
        "total_tokens": tiny_tokenizer.count(PROMPT) + 7,
    }


def test_it_accepts_a_prompt_of_token_ids(
    client: httpx.Client, tiny_tokenizer: TinyTokenizer
) -> None:
    ids = tiny_tokenizer.tokenizer.encode(PROMPT).ids
    by_ids = client.post(
        "/v1/completions",
        json={"model": MODEL_NAME, "prompt": ids, "max_tokens": 8, "temperature": 0},
    ).json()
    by_text = client.post(
        "/v1/completions",
        json={"model": MODEL_NAME, "prompt": PROMPT, "max_tokens": 8, "temperature": 0},
    ).json()
    assert by_ids["usage"]["prompt_tokens"] == len(ids)
    assert by_ids["choices"][0]["text"] == by_text["choices"][0]["text"]


def test_it_defaults_max_tokens_within_the_context(client: httpx.Client) -> None:
    response = client.post(
        "/v1/completions", json={"model": MODEL_NAME, "prompt": PROMPT, "temperature": 0}
    )
    body = response.json()
    assert response.status_code == 200
    assert 0 < body["usage"]["completion_tokens"] <= 512
