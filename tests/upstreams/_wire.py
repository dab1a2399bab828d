"""Helpers shared by the protocol servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from tests.upstreams.behavior import Behavior


class CutConnection(Exception):
    """Raised inside a streaming body: uvicorn then drops the connection mid-response."""


def answer_words(behavior: Behavior, limit: int | None) -> tuple[list[str], str]:
    """The tokens to send and the finish reason (``length`` when the limit cut the answer)."""
    words = list(behavior.words)
    if limit is not None and 0 < limit < len(words):
        return words[:limit], "length"
    return words, "stop"


async def paced(behavior: Behavior, words: list[str]) -> AsyncIterator[tuple[int, str]]:
    """Yield (index, word), applying the stream knobs: pacing, cut, early end."""
    for i, word in enumerate(words):
        if behavior.cut_after is not None and i >= behavior.cut_after:
            raise CutConnection(f"cut after {i} chunks")
        if behavior.end_early_after is not None and i >= behavior.end_early_after:
            return
        if behavior.chunk_delay:
            await asyncio.sleep(behavior.chunk_delay)
        yield i, word
