"""The standard prompt set every target of a comparison gets, and the request for one prompt."""

from __future__ import annotations

from dataclasses import dataclass

from routing import GenerationRequest

__all__ = ["CASES", "PROMPT_SET", "PromptCase", "prompt_request"]

_STORY = (
    "The lighthouse stood on a rock at the edge of the bay. Every evening its keeper climbed "
    "the hundred and twelve steps, trimmed the wick, wound the clockwork that turned the lens "
    "and wrote the weather in the log: wind, swell, visibility, and the ships that passed. "
)
# About 2,400 characters: roughly 600 tokens for common tokenizers, small enough for a
# 2,048-token context together with the long answer.
_LONG_TEXT = "".join(f"Entry {i}. {_STORY}" for i in range(1, 12))


@dataclass(frozen=True, slots=True)
class PromptCase:
    """One prompt of the standard set; every target gets the same ones, streamed."""

    name: str
    prompt: str
    max_tokens: int


PROMPT_SET: tuple[PromptCase, ...] = (
    PromptCase("short prompt, short answer", "Name three colours of the sea.", 16),
    PromptCase("short prompt, long answer", "Tell a long story about a lighthouse keeper.", 200),
    PromptCase("long prompt, short answer", f"{_LONG_TEXT}\nIn one sentence: what is this?", 16),
    PromptCase("long prompt, long answer", f"{_LONG_TEXT}\nContinue the log for a week.", 200),
)
CASES = [case.name for case in PROMPT_SET]


def prompt_request(case: PromptCase, *, model: str, tag: str) -> GenerationRequest:
    """The chat request for one case: streamed, greedy, the case's answer length.

    `tag` leads the prompt and must be unique to the call: no target may answer from a cached
    prompt prefix (the MLX server and Ollama both reuse one), which would measure its cache
    instead of its prefill.
    """
    return GenerationRequest.build(
        model=model,
        messages=[{"role": "user", "content": f"{tag} {case.prompt}"}],
        temperature=0.0,
        max_tokens=case.max_tokens,
        seed=0,
        stream=True,
    )
