"""mlx-lm's BatchGenerator with the engine's bookkeeping: which request each row decodes, and
how a row leaves the batch to be decoded alone again.

Why a row leaves: BatchGenerator with one sequence decodes at ~88% of `generate_step`'s speed
(see solo.py), and requests that arrived together finish apart, so the last one would pay that
for the rest of its answer. Once the batch has drained to one sequence that is decoding, the
engine takes it back onto the solo path (`take_back`).

What it takes, in mlx-lm 0.32's GenerationBatch (read in compat_mlx_lm.py): after each step
a row has reported every token fed into its KV cache, and holds one more token, sampled (its
sampler's RNG key already split for it) but neither fed nor reported: `_next_tokens[i]`. That
token goes to the solo sequence as its token in flight, exactly as the solo path holds one
when it hands over the other way, so nothing is sampled twice or skipped. The cache comes
from the public `remove(..., return_prompt_caches=True)`, which strips the row's left padding
(`BatchKVCache.extract`): a plain KVCache holding the prompt and every reported token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from .compat_mlx_lm import (
    BatchGenerator,
    decoding_uids,
    row_tokens_left,
    row_unfed_logprobs,
    row_unfed_token,
)
from .logprobs import read_logprobs
from .relay import GenerationHandle, TokenEvent


@dataclass
class BatchRow:
    """What a solo sequence needs to continue a row taken out of the batch."""

    cache: list[Any]
    # Sampled by the batch's last step; not in the cache, not sent to the client yet.
    pending: mx.array
    max_tokens: int
    # The log-probabilities `pending` was sampled from.
    pending_logprobs: mx.array


class DecodeBatch:
    """The running batch: mlx-lm's continuous batcher and the request behind each row."""

    def __init__(self, model: Any, eos: list[list[int]], max_batch_size: int) -> None:
        self._model = model
        self._eos = eos
        self.max_batch_size = max_batch_size
        self.active: dict[int, GenerationHandle] = {}
        self._generator = self._new_generator()

    def __len__(self) -> int:
        return len(self.active)

    def _new_generator(self) -> BatchGenerator:
        return BatchGenerator(
            self._model,
            stop_tokens=self._eos,
            completion_batch_size=self.max_batch_size,
            prefill_batch_size=min(8, self.max_batch_size),
        )

    def insert(
        self,
        handle: GenerationHandle,
        prompt: list[int],
        max_tokens: int | None = None,
        cache: list[Any] | None = None,
    ) -> None:
        """Add one request; it is prefilled during the next step.

        `cache` holds the request's tokens before `prompt` (a solo request moving over).
        """
        # A None sampler selects the batch's shared greedy sampler (see sampling.py).
        (uid,) = self._generator.insert(
            [prompt],
            [handle.max_tokens if max_tokens is None else max_tokens],
            caches=None if cache is None else [cache],
            samplers=[handle.sampler],  # type: ignore[list-item]
            logits_processors=[[handle.logits_processor] if handle.logits_processor else []],
        )
        handle.uid = uid
        self.active[uid] = handle

    def remove(self, handle: GenerationHandle) -> None:
        """Drop a request's row, if it has one here (a cancel)."""
        # `is`: a uid from before a `reset` may now name another request's row.
        if handle.uid is not None and self.active.get(handle.uid) is handle:
            self._generator.remove([handle.uid])
            del self.active[handle.uid]

    def step(self) -> list[tuple[GenerationHandle, TokenEvent]]:
        """Run one step; return each row's token, finish reason and, if its request asked,
        log-probabilities (finished rows leave)."""
        _, responses = self._generator.next()
        events = []
        for response in responses:
            handle = self.active.get(response.uid)
            if handle is None:
                continue
            if response.finish_reason is not None:
                del self.active[response.uid]
            read = None
            if handle.top_logprobs is not None:
                read = read_logprobs(response.logprobs, response.token, handle.top_logprobs)
            events.append((handle, (response.token, response.finish_reason, read)))
        return events

    def reset(self) -> list[GenerationHandle]:
        """Forget every row (after a failed step) and return their requests."""
        handles = list(self.active.values())
        self.active.clear()
        self._generator.close()
        self._generator = self._new_generator()
        return handles

    def lone(self) -> GenerationHandle | None:
        """Return the batch's only request if it is decoding (not queued, not prefilling)."""
        if len(self.active) != 1:
            return None
        ((uid, handle),) = self.active.items()
        return handle if decoding_uids(self._generator) == [uid] else None

    def take_back(self, handle: GenerationHandle) -> BatchRow:
        """Remove a decoding request's row and return its cache, token in flight and budget."""
        assert handle.uid is not None
        pending = row_unfed_token(self._generator, handle.uid)
        pending_logprobs = row_unfed_logprobs(self._generator, handle.uid)
        max_tokens = row_tokens_left(self._generator, handle.uid)
        caches = self._generator.remove([handle.uid], return_prompt_caches=True)
        cache, _tokens = caches[handle.uid]
        del self.active[handle.uid]
        handle.uid = None
        return BatchRow(cache, pending, max_tokens, pending_logprobs)

    def close(self) -> None:
        self._generator.close()
