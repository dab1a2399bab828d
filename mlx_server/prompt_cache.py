"""Keep the KV caches of finished solo requests, to skip re-prefilling a prompt's known prefix.

Why: chat clients resend the whole conversation every turn, so without this the time to first
token grows with the conversation. The next turn's prompt starts with the previous turn's
prompt and answer, which the previous request's KV cache already holds.

Owned by one engine thread (no locking; /metrics reads its int counters); the pool is emptied
when its engine stops, so a model's entries go when the model is unloaded. Entries come only
from sequences decoded alone from their start: the cache of one that went through the batch
was computed with the batch's padding, not as a cold solo prefill computes it.

Decoding writes into a cache, so a request never shares one with the pool: the next turn of a
conversation, sharing most of an entry, takes it out (no copy); a request sharing less than
half of an entry (a chat template's header, a system prompt, a title-generation request about
the chat) gets a copy, so that it does not destroy a long conversation's entry for a few
tokens.

Exactness: the reused positions hold the keys and values a cold prefill computes for the same
tokens at the same positions, and the rest of the prompt is fed after them as usual. On the
CPU backend the logits of a cold and a warm prefill of the tiny and bench models were
bit-identical.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .compat_mlx_lm import can_trim_prompt_cache, trim_prompt_cache

# Fewer shared tokens than this are not worth taking an entry for.
MIN_REUSE_TOKENS = 4


@dataclass
class CachedPrefix:
    """A KV cache and the exact token ids it holds, in order."""

    tokens: list[int]
    cache: list[Any]
    nbytes: int


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _nbytes(cache: list[Any]) -> int:
    try:
        return sum(int(c.nbytes) for c in cache)
    except NotImplementedError:
        return 0


class PrefixPool:
    """At most `max_entries` caches (and `max_bytes`, if given), least recently stored out first."""

    def __init__(self, max_entries: int, max_bytes: int | None = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: list[CachedPrefix] = []  # oldest first
        # Requests that reused a prefix, and the prompt tokens they did not prefill.
        self.hits = 0
        self.reused_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._entries)

    def take(self, prompt: list[int]) -> tuple[list[Any] | None, int]:
        """Return the cache of the entry sharing the longest prefix with `prompt`, trimmed to it.

        Return the cache and how many prompt tokens it holds, or (None, 0). At least one
        prompt token is always left out: feeding the last one produces the first logits.
        """
        best: tuple[int, CachedPrefix] | None = None
        for entry in self._entries:
            shared = min(_common_prefix(entry.tokens, prompt), len(prompt) - 1)
            if shared < MIN_REUSE_TOKENS:
                continue
            if best is None or shared > best[0]:
                best = (shared, entry)
        if best is None:
            return None, 0
        shared, entry = best
        if 2 * shared >= len(entry.tokens):
            self._entries.remove(entry)
            cache = entry.cache
        else:
            cache = copy.deepcopy(entry.cache)
        excess = len(entry.tokens) - shared
        if excess and trim_prompt_cache(cache, excess) != excess:
            return None, 0  # the cache could not drop its tail (checked at `keep`)
        self.hits += 1
        self.reused_tokens += shared
        return cache, shared

    def keep(self, kept: tuple[list[int], list[Any]] | None) -> None:
        """Keep a cache and the exact tokens it holds; evict the oldest entries over the bounds."""
        if kept is None or self.max_entries <= 0 or len(kept[0]) < MIN_REUSE_TOKENS:
            return
        tokens, cache = kept
        # A cache that cannot be trimmed (sliding windows that wrapped, recurrent state)
        # could only serve the exact same tokens again: not worth its memory.
        if not can_trim_prompt_cache(cache):
            return
        # The bookkeeping must match the cache exactly, or a reuse would not be exact.
        if any(c.size() != len(tokens) for c in cache):
            return
        self._entries.append(CachedPrefix(tokens, cache, _nbytes(cache)))
        while len(self._entries) > self.max_entries or (
            self.max_bytes is not None and self._entries and self.nbytes > self.max_bytes
        ):
            self._entries.pop(0)

    def clear(self) -> None:
        self._entries.clear()
