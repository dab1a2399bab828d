"""Decode a lone request as `mlx_lm.generate_step` does, and hand it to the batch on demand.

Why not always the batch: mlx-lm's BatchGenerator pays for batching even with one sequence
(a padded BatchKVCache and its attention mask, per-step response objects, logprobs split per
row). Measured in-process on the tiny model (2 CPU cores, 256 tokens): BatchGenerator with
one sequence decoded at 88% of `generate_step`'s tokens per second, which was the whole gap
between this server's single stream and raw `stream_generate`. So a request that has the
engine to itself is decoded here, with a plain KV cache and the same per-step work as
`generate_step`: one step is always in flight while the previous token is read.

When another request arrives, the sequence moves into the batch at the next step without
losing anything: its KV cache goes in as a prompt cache (mlx-lm merges it into the batch
cache), the token sampled but not yet fed goes in as the prompt, and its sampler (with its
RNG key) goes along, so greedy and seeded outputs are those of an all-batch run. When the
batch drains to that one sequence again, it comes back (`resume`, see batch.py) the same way:
its cache, the token the batch sampled but has not fed, its remaining budget and its sampler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from .compat_mlx_lm import greedy_sampler, make_prompt_cache
from .logprobs import read_logprobs
from .relay import TokenEvent

# Same chunk as mlx-lm's prefill: bounds the memory of one forward pass over a long prompt.
PREFILL_STEP = 2048


@dataclass
class Handover:
    """What the batch needs to continue a solo sequence."""

    unfed: list[int]
    max_tokens: int
    cache: list[Any]


class SoloSequence:
    """One sequence decoded alone: prefill in chunks, then one token per `advance`."""

    def __init__(
        self,
        model: Any,
        prompt_tokens: list[int],
        max_tokens: int,
        sampler: Any,
        cache: list[Any] | None = None,
        pending: mx.array | None = None,
        cached: int = 0,
        logits_processor: Callable[[mx.array, mx.array], mx.array] | None = None,
        top_logprobs: int | None = None,
        pending_logprobs: mx.array | None = None,
    ):
        self._model = model
        self._top_logprobs = top_logprobs
        self._sampler = sampler or greedy_sampler
        self._logits_processor = logits_processor
        self._cache = make_prompt_cache(model) if cache is None else cache
        # Tokens not in the cache yet (`cached` prompt tokens are, from the prompt cache);
        # the last prompt token is fed by the first forward.
        self._unfed = list(prompt_tokens[cached:])
        # The token ids in the cache, in order, for the prompt cache (prompt_cache.py); None
        # for a sequence resumed from the batch, whose cache the batch computed.
        self._fed: list[int] | None = list(prompt_tokens[:cached]) if pending is None else None
        self._max_tokens = max_tokens
        self._emitted = 0
        # The next token, sampled lazily by a forward already queued to MLX, and the
        # log-probabilities it was sampled from.
        self._pending = pending
        self._pending_logprobs = pending_logprobs

    @classmethod
    def resume(
        cls,
        model: Any,
        cache: list[Any],
        pending: mx.array,
        max_tokens: int,
        sampler: Any,
        logits_processor: Callable[[mx.array, mx.array], mx.array] | None = None,
        top_logprobs: int | None = None,
        pending_logprobs: mx.array | None = None,
    ) -> SoloSequence:
        """Continue a sequence taken out of the batch: `pending` is its next token to send,
        sampled but not in `cache`, from `pending_logprobs`; `max_tokens` counts it."""
        return cls(
            model,
            [],
            max_tokens,
            sampler,
            cache=cache,
            pending=pending,
            logits_processor=logits_processor,
            top_logprobs=top_logprobs,
            pending_logprobs=pending_logprobs,
        )

    @property
    def decoding(self) -> bool:
        """Tell whether the prompt is in the cache (the next `advance` yields a token)."""
        return self._pending is not None

    def advance(self, eos: frozenset[int]) -> TokenEvent | None:
        """Prefill one chunk (returns None) or return the next token and its finish reason."""
        if self._pending is None:
            self._prefill_chunk()
            return None
        token_array, logprobs = self._pending, self._pending_logprobs
        last_by_budget = self._emitted + 1 >= self._max_tokens
        # Queue the next forward before reading this token, as generate_step does, so
        # MLX computes step n+1 while Python publishes token n.
        self._pending = None if last_by_budget else self._forward(token_array)
        event = self._emit(token_array, logprobs, last_by_budget, eos)
        if self._fed is not None and not last_by_budget:
            self._fed.append(event[0])
        return event

    def hand_over(self, eos: frozenset[int]) -> tuple[TokenEvent | None, Handover]:
        """Stop decoding alone: return the token in flight (if any) and the batch's input.

        The token in flight is read but not fed; it becomes the batch's one-token prompt,
        so the batch's first token for this sequence is the one after it.
        """
        event = None
        if self._pending is not None:
            token_array, self._pending = self._pending, None
            last_by_budget = self._emitted + 1 >= self._max_tokens
            event = self._emit(token_array, self._pending_logprobs, last_by_budget, eos)
            self._unfed = [event[0]]
        self._fed = None  # the cache is the batch's now
        return event, Handover(self._unfed, self._max_tokens - self._emitted, self._cache)

    def kept(self) -> tuple[list[int], list[Any]] | None:
        """Return the token ids in the cache and the cache, once the sequence is over.

        None when they are unknown (a sequence resumed from the batch). A token sent last
        may be in the cache too: a forward is queued before a token is read (EOS included).
        """
        if self._fed is None:
            return None
        return self._fed, self._cache

    def _emit(
        self,
        token_array: mx.array,
        logprobs: mx.array | None,
        last_by_budget: bool,
        eos: frozenset[int],
    ) -> TokenEvent:
        token = token_array.item()
        assert isinstance(token, int)  # a sampled token id
        self._emitted += 1
        read = None
        if self._top_logprobs is not None and logprobs is not None:
            read = read_logprobs(logprobs, token, self._top_logprobs)
        if token in eos:
            return token, "stop", read
        return token, "length" if last_by_budget else None, read

    def _prefill_chunk(self) -> None:
        """Feed up to PREFILL_STEP prompt tokens; queue the first forward once one is left."""
        if len(self._unfed) > 1:
            chunk = self._unfed[: min(PREFILL_STEP, len(self._unfed) - 1)]
            self._model(mx.array(chunk)[None], cache=self._cache)
            mx.eval([c.state for c in self._cache])
            mx.clear_cache()
            self._unfed = self._unfed[len(chunk) :]
            if self._fed is not None:
                self._fed.extend(chunk)
        if len(self._unfed) == 1:
            self._pending = self._forward(mx.array(self._unfed))
            if self._fed is not None:
                self._fed.extend(self._unfed)
            self._unfed = []

    def _forward(self, tokens: mx.array) -> mx.array:
        """Queue one forward pass and the sampling of its last position."""
        logits = self._model(tokens.reshape(1, -1), cache=self._cache)[:, -1, :]
        if self._logits_processor is not None:
            # As mlx-lm's batch calls it: with the token being fed (grammar.py relies on it).
            logits = self._logits_processor(tokens, logits)
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        self._pending_logprobs = logprobs
        sampled: mx.array = self._sampler(logprobs)
        mx.async_eval(sampled)
        return sampled
