"""What each model can do, in Ollama's `capabilities` vocabulary: completion, tools, embedding,
thinking (never vision: images are not supported).

Read from the model's tokenizer as mlx-lm loads it (its tool parser and thinking markers,
tokenizer_utils.py) and its config: the loaded model's tokenizer when there is one, else the
tokenizer alone, loaded off the event loop and kept per folder (and modification time).
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

from .catalog import ModelEntry
from .compat_mlx_lm import load_tokenizer
from .provider import ModelProvider
from .tools import template_supports_tools


def model_capabilities(tokenizer: Any, config: dict[str, Any]) -> list[str]:
    """List a model's capabilities from its tokenizer and config."""
    found = ["completion"]
    if template_supports_tools(tokenizer):
        found.append("tools")
    # mlx-lm language models keep their transformer as `.model` with `hidden_size` (see
    # engine._hidden, which checks the loaded model the same way).
    if isinstance(config.get("text_config", config).get("hidden_size"), int):
        found.append("embedding")
    if getattr(tokenizer, "has_thinking", False):
        found.append("thinking")
    return found


@functools.lru_cache(maxsize=64)
def _tokenizer(path: Path, modified_at: float) -> Any:
    del modified_at  # part of the cache key: a rebuilt folder is read again
    return load_tokenizer(path)


async def capabilities_of(provider: ModelProvider, entry: ModelEntry) -> list[str]:
    """List one catalog entry's capabilities."""
    loaded = next((m for m in provider.loaded() if m.entry.path == entry.path), None)
    if loaded is not None:
        tokenizer = loaded.tokenizer
    else:
        tokenizer = await asyncio.to_thread(_tokenizer, entry.path, entry.modified_at)
    return model_capabilities(tokenizer, entry.config())
