"""Knobs that make a test upstream misbehave, shared by the Ollama and OpenAI servers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_WORDS = ("Hello", ",", " world", "!")


@dataclass
class Behavior:
    """What the next answers look like. Mutate it from a test; ``reset()`` between tests."""

    words: tuple[str, ...] = DEFAULT_WORDS  # the answer, one token per stream chunk
    status: int = 200  # answer every generation with this status (>= 400: an error body)
    error_message: str = "simulated failure"
    delay: float = 0.0  # seconds before the response headers
    chunk_delay: float = 0.0  # seconds between stream chunks
    cut_after: int | None = None  # stream: drop the connection after N content chunks
    end_early_after: int | None = None  # stream: end cleanly after N chunks, with no final chunk
    malformed: bool = False  # answer with a body (or first line) that is not JSON
    fail_before_content: bool = False  # 200, then an in-stream error before any content
    models: tuple[str, ...] | None = None  # if set, other model names get the protocol's 404
    # Ollama: a model load of this many ms before each answer (slept, and reported as the
    # final chunk's load_duration); None: no load, a tiny load_duration as a loaded model's.
    load_ms: float | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)  # bodies received, in order

    def reset(self) -> None:
        fresh = Behavior()
        for name in self.__dataclass_fields__:
            if name != "requests":
                setattr(self, name, getattr(fresh, name))
        self.requests.clear()
