"""Embeddings from a loaded language model: read the request, pool hidden states, render.

Pooling: the mean of the final hidden states (after the model's last norm) over the input's
tokens (BOS included), then L2-normalised. Inputs of one request run as one padded batch;
right padding under the causal mask leaves every real position's state unchanged, so an input
embeds the same alone or batched. `dimensions` keeps the first N components and normalises
again (the Matryoshka convention OpenAI's `dimensions` follows).

Wire formats:
- OpenAI (API reference, embeddings): `input` (a string, a list of strings, a list of token
  ids or a list of such lists), `encoding_format` `float` | `base64` (little-endian float32),
  `dimensions`; answer `{"object": "list", "data": [{"object": "embedding", "index",
  "embedding"}], "model", "usage": {"prompt_tokens", "total_tokens"}}`.
- Ollama (docs/api.md): `/api/embed` `input` (a string or a list), `truncate` (default true:
  cut inputs to the context), `dimensions`, `keep_alive`; answer `{"model", "embeddings",
  "total_duration", "load_duration", "prompt_eval_count"}`. Legacy `/api/embeddings`:
  `prompt` (one string), answer `{"embedding"}`.
The parsers and renderers are framework-free (issue 12 moves them); `embed` is the engine's.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import numpy as np

from .errors import InvalidRequest

MAX_INPUTS = 2048  # OpenAI's limit on inputs per request
EMBED_BATCH = 32  # inputs per forward pass: bounds the memory of one padded batch


@dataclass(frozen=True)
class EmbeddingRequest:
    """What to embed: texts or token-id lists, and how to shape the vectors."""

    inputs: tuple[str | tuple[int, ...], ...]
    dimensions: int | None = None
    truncate: bool = False  # cut inputs longer than the context instead of refusing them
    base64: bool = False


def _inputs(value: Any, param: str, *, token_ids: bool) -> tuple[str | tuple[int, ...], ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise InvalidRequest(f"'{param}' must be a non-empty string or list", param=param)
    if token_ids and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        value = [value]  # one input given as token ids
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(f"'{param}' may hold at most {MAX_INPUTS} inputs", param=param)
    inputs: list[str | tuple[int, ...]] = []
    for i, item in enumerate(value):
        if isinstance(item, str) and item:
            inputs.append(item)
        elif (
            token_ids
            and isinstance(item, list)
            and item
            and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in item)
        ):
            inputs.append(tuple(item))
        else:
            kind = "a non-empty string or list of token ids" if token_ids else "a non-empty string"
            raise InvalidRequest(f"'{param}[{i}]' must be {kind}", param=f"{param}[{i}]")
    return tuple(inputs)


def _dimensions(body: dict[str, Any]) -> int | None:
    value = body.get("dimensions")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest("'dimensions' must be a positive integer", param="dimensions")
    return value


def openai_request(body: dict[str, Any]) -> EmbeddingRequest:
    """Read an OpenAI `/v1/embeddings` body."""
    if "input" not in body:
        raise InvalidRequest("'input' is required", param="input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise InvalidRequest(
            "'encoding_format' must be 'float' or 'base64'", param="encoding_format"
        )
    return EmbeddingRequest(
        _inputs(body["input"], "input", token_ids=True),
        _dimensions(body),
        truncate=False,
        base64=encoding == "base64",
    )


def ollama_request(body: dict[str, Any], *, legacy: bool) -> EmbeddingRequest:
    """Read an Ollama `/api/embed` body (or a legacy `/api/embeddings` one)."""
    key = "prompt" if legacy else "input"
    if key not in body:
        raise InvalidRequest(f"'{key}' is required", param=key)
    if legacy and not isinstance(body[key], str):
        raise InvalidRequest("'prompt' must be a string", param="prompt")
    truncate = body.get("truncate", True)
    if not isinstance(truncate, bool):
        raise InvalidRequest("'truncate' must be true or false", param="truncate")
    return EmbeddingRequest(
        _inputs(body[key], key, token_ids=False), _dimensions(body), truncate=truncate
    )


def fit(
    request: EmbeddingRequest, token_lists: list[list[int]], context: int, hidden: int, param: str
) -> list[list[int]]:
    """Check the inputs against the context and `dimensions` against the model; cut if asked."""
    if request.dimensions is not None and request.dimensions > hidden:
        raise InvalidRequest(
            f"'dimensions' is {request.dimensions}, but the model's embeddings have {hidden}",
            param="dimensions",
        )
    fitted = []
    for i, tokens in enumerate(token_lists):
        if len(tokens) > context:
            if not request.truncate:
                raise InvalidRequest(
                    f"'{param}[{i}]' is {len(tokens)} tokens, but the model's context is "
                    f"{context} tokens",
                    param=f"{param}[{i}]",
                )
            tokens = tokens[:context]
        fitted.append(tokens)
    return fitted


def embed(model: Any, token_lists: list[list[int]]) -> list[np.ndarray]:
    """Mean-pool the final hidden states of each input and L2-normalise (engine thread)."""
    vectors: list[np.ndarray] = []
    for start in range(0, len(token_lists), EMBED_BATCH):
        chunk = token_lists[start : start + EMBED_BATCH]
        width = max(len(t) for t in chunk)
        padded = mx.array([t + [0] * (width - len(t)) for t in chunk])
        lengths = mx.array([len(t) for t in chunk])
        hidden = model.model(padded).astype(mx.float32)  # (batch, width, hidden)
        real = (mx.arange(width)[None, :] < lengths[:, None]).astype(mx.float32)
        pooled = (hidden * real[..., None]).sum(axis=1) / lengths[:, None].astype(mx.float32)
        mx.eval(pooled)
        vectors.extend(np.array(pooled))
    return vectors


def shaped(vector: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Keep the first `dimensions` components, then L2-normalise."""
    if dimensions is not None:
        vector = vector[:dimensions]
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def openai_answer(
    vectors: list[np.ndarray], request: EmbeddingRequest, model_name: str, tokens: int
) -> dict[str, Any]:
    """Render an OpenAI embeddings answer."""
    data = []
    for i, vector in enumerate(vectors):
        values = shaped(vector, request.dimensions).astype("<f4")
        encoded: Any = (
            base64.b64encode(values.tobytes()).decode() if request.base64 else values.tolist()
        )
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": model_name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def ollama_vectors(vectors: list[np.ndarray], request: EmbeddingRequest) -> list[list[float]]:
    """The vectors as Ollama's `embeddings` list."""
    return [shaped(v, request.dimensions).astype(np.float32).tolist() for v in vectors]
