"""Log-probabilities: one entry per sampled token, the model's own values, in both protocols."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import mlx.core as mx
import ollama
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlx_lm.utils import load

from mlx_server import logprobs
from mlx_server.errors import InvalidRequest

from .conftest import MODEL_NAME, ServerProcess

MESSAGES: list[Any] = [{"role": "user", "content": "Why is the sky blue?"}]


def check_entries(entries: list[Any], top: int) -> None:
    """Every value is a log-probability, top entries are sorted and hold the sampled one's."""
    for entry in entries:
        assert entry["logprob"] <= 0
        alternatives = entry["top_logprobs"]
        assert len(alternatives) == top
        values = [a["logprob"] for a in alternatives]
        assert values == sorted(values, reverse=True) and all(v <= 0 for v in values)
        if alternatives:
            assert entry["logprob"] <= values[0] + 1e-6
        for alternative in alternatives:
            if alternative["token"] == entry["token"]:
                assert alternative["logprob"] == pytest.approx(entry["logprob"], abs=1e-6)
        assert bytes(entry["bytes"]).decode(errors="replace") == entry["token"]


def test_openai_chat_logprobs_have_one_entry_per_token(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused")
    answer = client.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, max_tokens=12, logprobs=True, top_logprobs=5, seed=3
    )
    choice = answer.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    entries = [e.model_dump() for e in choice.logprobs.content]
    assert answer.usage is not None and len(entries) == answer.usage.completion_tokens == 12
    check_entries(entries, 5)
    # mlx-lm's detokenizer drops the space a first token starts with; the token keeps it.
    assert "".join(e["token"] for e in entries).lstrip() == choice.message.content


def test_streamed_logprobs_add_up_to_the_whole_answer(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused")
    stream = client.chat.completions.create(
        model=MODEL_NAME,
        messages=MESSAGES,
        max_tokens=12,
        logprobs=True,
        top_logprobs=2,
        seed=3,
        stream=True,
    )
    entries = []
    for chunk in stream:
        for choice in chunk.choices:
            if choice.logprobs and choice.logprobs.content:
                entries += [e.model_dump() for e in choice.logprobs.content]
    assert len(entries) == 12
    check_entries(entries, 2)
    whole = client.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, max_tokens=12, logprobs=True, top_logprobs=2, seed=3
    )
    assert whole.choices[0].logprobs is not None and whole.choices[0].logprobs.content is not None
    assert [e["logprob"] for e in entries] == [e.logprob for e in whole.choices[0].logprobs.content]


def test_legacy_completions_report_tokens_offsets_and_tops(client: httpx.Client) -> None:
    body = {"model": MODEL_NAME, "prompt": "Once upon", "max_tokens": 6, "logprobs": 3, "seed": 1}
    choice = client.post("/v1/completions", json=body).json()["choices"][0]
    logprobs = choice["logprobs"]
    assert "".join(logprobs["tokens"]).lstrip() == choice["text"]
    assert len(logprobs["token_logprobs"]) == 6 and all(v <= 0 for v in logprobs["token_logprobs"])
    assert logprobs["text_offset"][0] == 0
    assert all(len(top) == 3 for top in logprobs["top_logprobs"])


@pytest.fixture(scope="module")
def reference_model(tiny_model_path: Path) -> Any:
    model, _ = load(str(tiny_model_path))  # type: ignore[misc]
    return model


def recomputed(model: Any, context: list[int], generated: int) -> list[float]:
    """Log-probabilities of the last `generated` tokens of `context`, from one forward pass."""
    logits = model(mx.array(context[:-1])[None])[0].astype(mx.float32)
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    start = len(context) - generated
    return [logprobs[p - 1, context[p]].item() for p in range(start, len(context))]


def test_the_sampled_tokens_logprobs_match_a_forward_pass(
    server: ServerProcess, reference_model: Any
) -> None:
    client = ollama.Client(host=server.base_url)
    answer = client.generate(
        model=MODEL_NAME,
        prompt="Why is the sky blue?",
        logprobs=True,
        top_logprobs=3,
        options={"num_predict": 10, "seed": 9, "temperature": 1},
    )
    assert answer.done_reason == "length" and answer.logprobs is not None
    context = list(answer.context or [])
    served = [entry.logprob for entry in answer.logprobs]
    assert len(served) == 10
    assert served == pytest.approx(recomputed(reference_model, context, 10), abs=1e-4)


def test_a_batched_request_reports_the_logprobs_it_reports_alone(server: ServerProcess) -> None:
    body = {
        "model": MODEL_NAME,
        "messages": MESSAGES,
        "max_tokens": 16,
        "seed": 4,
        "logprobs": True,
        "top_logprobs": 1,
    }

    def values(answer: dict[str, Any]) -> list[float]:
        return [e["logprob"] for e in answer["choices"][0]["logprobs"]["content"]]

    alone = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=60).json()

    async def batched() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            noise = {"model": MODEL_NAME, "prompt": "Why", "max_tokens": 40}
            answers = await asyncio.gather(
                http.post("/v1/completions", json=noise),
                http.post("/v1/chat/completions", json=body),
                http.post("/v1/completions", json=noise),
            )
            result: dict[str, Any] = answers[1].json()
            return result

    together = asyncio.run(batched())
    assert together["choices"][0]["message"] == alone["choices"][0]["message"]
    assert values(together) == pytest.approx(values(alone), abs=1e-4)


def test_ollama_streams_logprobs_per_chunk(client: httpx.Client) -> None:
    body = {
        "model": MODEL_NAME,
        "messages": MESSAGES,
        "logprobs": True,
        "options": {"num_predict": 8},
    }
    lines = [json.loads(line) for line in client.post("/api/chat", json=body).text.splitlines()]
    entries = [e for line in lines for e in line.get("logprobs", [])]
    assert len(entries) == lines[-1]["eval_count"] == 8
    assert all(e["logprob"] <= 0 and e["top_logprobs"] == [] for e in entries)


@pytest.mark.parametrize(
    ("path", "fields", "param"),
    [
        ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ("/v1/chat/completions", {"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
        ("/v1/chat/completions", {"top_logprobs": 3}, "top_logprobs"),
        ("/v1/chat/completions", {"logprobs": "yes"}, "logprobs"),
        ("/v1/completions", {"logprobs": 21}, "logprobs"),
        ("/v1/completions", {"logprobs": True}, "logprobs"),
        ("/v1/completions", {"top_logprobs": 2}, "top_logprobs"),
    ],
)
def test_it_rejects_bad_logprobs_requests(
    client: httpx.Client, path: str, fields: dict[str, Any], param: str
) -> None:
    body = {"model": MODEL_NAME, "messages": MESSAGES, "prompt": "hi", "max_tokens": 2, **fields}
    response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_the_clients_see_a_top_logprobs_over_twenty_as_a_bad_request(
    server: ServerProcess,
) -> None:
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        client.chat.completions.create(
            model=MODEL_NAME, messages=MESSAGES, logprobs=True, top_logprobs=21
        )
    with pytest.raises(ollama.ResponseError, match="top_logprobs") as raised:
        ollama.Client(host=server.base_url).chat(
            model=MODEL_NAME, messages=MESSAGES, logprobs=True, top_logprobs=21
        )
    assert raised.value.status_code == 400


JSON_VALUES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4)


@given(st.dictionaries(st.sampled_from(["logprobs", "top_logprobs"]), JSON_VALUES))
def test_logprobs_fields_are_read_or_refused_by_name(body: dict[str, Any]) -> None:
    for read in (logprobs.chat_request, logprobs.completion_request):
        try:
            top = read(body)
        except InvalidRequest as exc:
            assert exc.param in ("logprobs", "top_logprobs")
        else:
            assert top is None or 0 <= top <= logprobs.MAX_TOP_LOGPROBS
