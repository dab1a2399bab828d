"""Log-probabilities of sampled tokens: read on the engine thread, rendered per protocol.

What a logprob is here: the log-softmax of the logits the token was sampled from, after any
grammar mask (grammar.py) and before temperature and top-p, as mlx-lm reports it and as
OpenAI documents it (the model's probability, not the sampler's). One entry per sampled token,
an end-of-sequence token included (its text is the tokenizer's, e.g. `</s>`).

Wire formats:
- OpenAI chat (API reference, `logprobs`/`top_logprobs` <= 20): `choice.logprobs.content:
  [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}]`.
- OpenAI legacy completions (`logprobs`: how many top entries): `choice.logprobs: {"tokens",
  "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"}`.
- Ollama (docs/api.md, `logprobs: true`, `top_logprobs` <= 20): a top-level `logprobs` list
  of the chat shape above.
The request parsers and renderers below are framework-free (issue 12 moves them);
`read_logprobs` is the engine's part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from .errors import InvalidRequest

MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class TokenLogprobs:
    """A sampled token's log-probability and the most likely tokens at its position."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...]  # most likely first


def read_logprobs(logprobs: mx.array, token: int, top: int) -> TokenLogprobs:
    """Read one position's log-probabilities (a vocabulary-wide row) for `token` (engine thread)."""
    row = logprobs.reshape(-1)
    best: tuple[tuple[int, float], ...] = ()
    if top > 0:
        ids = mx.argpartition(-row, kth=top - 1)[:top]
        values = row[ids]
        order = mx.argsort(-values)
        best = tuple(
            zip(ids[order].tolist(), values[order].astype(mx.float32).tolist(), strict=True)  # type: ignore[arg-type]
        )
    value = row[token].astype(mx.float32).item()
    assert isinstance(value, float)
    return TokenLogprobs(token, value, best)


def _top(value: Any, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{param}' must be an integer", param=param)
    if not 0 <= value <= MAX_TOP_LOGPROBS:
        raise InvalidRequest(
            f"'{param}' must be between 0 and {MAX_TOP_LOGPROBS}, got {value}", param=param
        )
    return value


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidRequest(f"'{key}' must be true or false", param=key)
    return bool(value)


def chat_request(body: dict[str, Any]) -> int | None:
    """Read `logprobs` (bool) and `top_logprobs` (OpenAI chat, Ollama): None when off."""
    wanted = _flag(body, "logprobs")
    top = body.get("top_logprobs")
    if top is None:
        return 0 if wanted else None
    count = _top(top, "top_logprobs")
    if not wanted:
        raise InvalidRequest("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    return count


def completion_request(body: dict[str, Any]) -> int | None:
    """Read OpenAI legacy completions' `logprobs` (how many top entries): None when off."""
    value = body.get("logprobs")
    return None if value is None else _top(value, "logprobs")


def _text(tokenizer: Any, token: int) -> str:
    text: str = tokenizer.decode([token])
    return text


def _entry(tokenizer: Any, token: int, logprob: float) -> dict[str, Any]:
    text = _text(tokenizer, token)
    return {"token": text, "logprob": logprob, "bytes": list(text.encode())}


def openai_chat(tokenizer: Any, entries: list[TokenLogprobs]) -> dict[str, Any]:
    """Render `choice.logprobs` of an OpenAI chat answer or chunk."""
    return {
        "content": [
            {
                **_entry(tokenizer, e.token, e.logprob),
                "top_logprobs": [_entry(tokenizer, t, lp) for t, lp in e.top],
            }
            for e in entries
        ],
        "refusal": None,
    }


def openai_completion(tokenizer: Any, entries: list[TokenLogprobs], offset: int) -> dict[str, Any]:
    """Render `choice.logprobs` of an OpenAI legacy completion; `offset`: text before it."""
    tokens = [_text(tokenizer, e.token) for e in entries]
    offsets = []
    for text in tokens:
        offsets.append(offset)
        offset += len(text)
    return {
        "tokens": tokens,
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [{_text(tokenizer, t): lp for t, lp in e.top} for e in entries],
        "text_offset": offsets,
    }


def ollama(tokenizer: Any, entries: list[TokenLogprobs]) -> list[dict[str, Any]]:
    """Render Ollama's top-level `logprobs` list."""
    return openai_chat(tokenizer, entries)["content"]  # type: ignore[no-any-return]
