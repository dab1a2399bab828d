"""Embeddings from the loaded language model: /v1/embeddings, /api/embed, /api/embeddings."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import mlx.core as mx
import numpy as np
import ollama
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlx_lm.utils import load

from mlx_server import embeddings
from mlx_server.errors import InvalidRequest

from .conftest import MODEL_NAME, ServerProcess, TinyTokenizer
from .lone_requests import first_streaming

TEXTS = ["Why is the sky blue?", "hi", "The quick brown fox jumps over the lazy dog."]


@pytest.fixture
def openai_client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


def vectors(client: openai.OpenAI, inputs: Any, **options: Any) -> list[np.ndarray]:
    answer = client.embeddings.create(model=MODEL_NAME, input=inputs, **options)
    assert [d.index for d in answer.data] == list(range(len(answer.data)))
    return [np.array(d.embedding) for d in answer.data]


def test_embeddings_are_deterministic_and_normalised(openai_client: openai.OpenAI) -> None:
    first = vectors(openai_client, TEXTS[0])
    again = vectors(openai_client, TEXTS[0])
    assert np.array_equal(first[0], again[0])
    assert np.linalg.norm(first[0]) == pytest.approx(1.0, abs=1e-5)
    assert len(first[0]) == 64  # the tiny model's hidden size


def test_a_batch_keeps_order_and_equals_the_single_calls(openai_client: openai.OpenAI) -> None:
    batch = vectors(openai_client, TEXTS)
    singles = [vectors(openai_client, text)[0] for text in TEXTS]
    for together, alone in zip(batch, singles, strict=True):
        assert together == pytest.approx(alone, abs=1e-5)
    assert not np.allclose(batch[0], batch[1])


def test_usage_counts_every_input_token(
    openai_client: openai.OpenAI, tiny_tokenizer: TinyTokenizer
) -> None:
    answer = openai_client.embeddings.create(model=MODEL_NAME, input=TEXTS)
    expected = sum(tiny_tokenizer.count(text) for text in TEXTS)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == expected


def test_base64_and_dimensions(openai_client: openai.OpenAI, server: ServerProcess) -> None:
    full = vectors(openai_client, TEXTS[0])[0]
    short = vectors(openai_client, TEXTS[0], dimensions=8)[0]
    assert len(short) == 8 and np.linalg.norm(short) == pytest.approx(1.0, abs=1e-5)
    assert short == pytest.approx(full[:8] / np.linalg.norm(full[:8]), abs=1e-5)
    raw = httpx.post(
        f"{server.base_url}/v1/embeddings",
        json={"model": MODEL_NAME, "input": TEXTS[0], "encoding_format": "base64"},
    ).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert decoded == pytest.approx(full, abs=1e-6)


def test_token_id_inputs_embed_like_their_text(
    openai_client: openai.OpenAI, tiny_tokenizer: TinyTokenizer
) -> None:
    ids = tiny_tokenizer.tokenizer.encode(TEXTS[0]).ids
    assert vectors(openai_client, [ids])[0] == pytest.approx(
        vectors(openai_client, TEXTS[0])[0], abs=1e-6
    )


def test_the_vector_is_the_mean_of_the_final_hidden_states(
    openai_client: openai.OpenAI, tiny_model_path: Path, tiny_tokenizer: TinyTokenizer
) -> None:
    model, _ = load(str(tiny_model_path))  # type: ignore[misc]
    ids = tiny_tokenizer.tokenizer.encode(TEXTS[2]).ids
    hidden = model.model(mx.array(ids)[None])[0].astype(mx.float32)
    pooled = np.array(hidden.mean(axis=0))
    expected = pooled / np.linalg.norm(pooled)
    assert vectors(openai_client, TEXTS[2])[0] == pytest.approx(expected, abs=1e-5)


def test_the_ollama_client_embeds(server: ServerProcess, openai_client: openai.OpenAI) -> None:
    client = ollama.Client(host=server.base_url)
    answer = client.embed(model=MODEL_NAME, input=TEXTS)
    assert len(answer.embeddings) == 3 and (answer.prompt_eval_count or 0) > 0
    reference = vectors(openai_client, TEXTS)
    for served, expected in zip(answer.embeddings, reference, strict=True):
        assert served == pytest.approx(expected, abs=1e-6)
    legacy = client.embeddings(model=MODEL_NAME, prompt=TEXTS[1])
    assert legacy.embedding == pytest.approx(reference[1], abs=1e-6)


def test_ollama_truncates_a_long_input_unless_told_not_to(
    client: httpx.Client, tiny_tokenizer: TinyTokenizer
) -> None:
    long = "hi " * (tiny_tokenizer.context_length + 50)
    answer = client.post("/api/embed", json={"model": MODEL_NAME, "input": long}).json()
    assert answer["prompt_eval_count"] == tiny_tokenizer.context_length
    refused = client.post(
        "/api/embed", json={"model": MODEL_NAME, "input": ["hi", long], "truncate": False}
    )
    assert refused.status_code == 400 and "'input[1]'" in refused.json()["error"]


def test_an_embedding_is_served_while_a_stream_decodes(lone_server: ServerProcess) -> None:
    with lone_server.client() as http, first_streaming(http):
        answer = http.post("/api/embed", json={"model": MODEL_NAME, "input": "hi"}, timeout=10)
        assert answer.status_code == 200 and len(answer.json()["embeddings"][0]) == 64
        assert http.get("/health").json()["active_requests"] == 1


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": ""}, "input[0]"),
        ({"input": []}, "input"),
        ({"input": ["hi", ""]}, "input[1]"),
        ({}, "input"),
        ({"input": "hi " * 3000}, "input[0]"),
        ({"input": [[1, 2, 10**6]]}, "input[0]"),
        ({"input": "hi", "dimensions": 65}, "dimensions"),
        ({"input": "hi", "dimensions": 0}, "dimensions"),
        ({"input": "hi", "encoding_format": "int8"}, "encoding_format"),
        ({"input": [{"text": "hi"}]}, "input[0]"),
    ],
)
def test_it_rejects_bad_embedding_requests(
    client: httpx.Client, fields: dict[str, Any], param: str
) -> None:
    response = client.post("/v1/embeddings", json={"model": MODEL_NAME, **fields})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_ollama_rejects_empty_input(client: httpx.Client) -> None:
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("/api/embed", {"input": []}),
        ("/api/embed", {"input": ""}),
        ("/api/embed", {}),
        ("/api/embeddings", {"prompt": ""}),
        ("/api/embeddings", {"prompt": ["a"]}),
    ]
    for path, body in bodies:
        response = client.post(path, json={"model": MODEL_NAME, **body})
        assert response.status_code == 400, (path, body)
        assert "input" in response.json()["error"] or "prompt" in response.json()["error"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from(["input", "prompt", "dimensions", "truncate", "encoding_format"]), JSON
    )
)
def test_embedding_bodies_are_read_or_refused_by_name(body: dict[str, Any]) -> None:
    for read in (
        embeddings.openai_request,
        lambda b: embeddings.ollama_request(b, legacy=False),
        lambda b: embeddings.ollama_request(b, legacy=True),
    ):
        try:
            wanted = read(body)
        except InvalidRequest as exc:
            assert exc.param is not None
            assert exc.param.split("[")[0] in set(body) | {"input", "prompt"}
        else:
            assert wanted.inputs
