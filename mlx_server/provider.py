"""Load models on first use, keep them while they are wanted, unload them when not.

A model stays loaded until its keep-alive lapses (Ollama semantics: a duration, 0 to
unload after the request, negative for ever) or until loading another model would
exceed the memory budget, in which case the least recently used idle models go first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from .catalog import ModelCatalog, ModelEntry
from .compat_mlx_lm import architecture_supported
from .engine import Engine, LoadedWeights
from .errors import ModelLoadFailed, UnsupportedModel
from .grammar import GrammarCompiler
from .prompts import longest_token_chars
from .settings import ServerSettings

logger = logging.getLogger("mlx_server.provider")

FALLBACK_CONTEXT = 4096


@dataclass(eq=False)
class LoadedModel:
    """A model in memory with its engine, tokenizer and keep-alive state."""

    entry: ModelEntry
    engine: Engine
    tokenizer: Any
    config: dict[str, Any]
    size_bytes: int
    # Grammars for constrained answers (grammar.py), built on first use.
    grammars: GrammarCompiler
    # Width of the model's embeddings (embeddings.py); None if it cannot embed.
    embedding_size: int | None = None
    in_use: int = 0
    # Monotonic deadline after which an idle model is unloaded; None keeps it for ever.
    expires_at: float | None = None
    expires_at_wall: float | None = None
    last_used: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return self.entry.name

    @functools.cached_property
    def longest_token_chars(self) -> int:
        """The most characters of text one token can stand for (prompts.py)."""
        return longest_token_chars(self.tokenizer)

    @property
    def context_length(self) -> int:
        """Return the longest sequence (prompt + completion) the model was trained for."""
        config = self.config.get("text_config", self.config)
        for key in ("max_position_embeddings", "max_sequence_length", "n_positions"):
            value = config.get(key)
            if isinstance(value, int) and value > 0:
                return value
        return FALLBACK_CONTEXT


def _vocab_size(weights: LoadedWeights) -> int:
    """Return the width of the model's logits (may exceed the tokenizer's vocabulary)."""
    config = weights.config.get("text_config", weights.config)
    value = config.get("vocab_size")
    return value if isinstance(value, int) and value > 0 else len(weights.tokenizer)


class ModelProvider:
    """Hand out loaded models by name; own their lifecycle."""

    def __init__(self, settings: ServerSettings, catalog: ModelCatalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog or ModelCatalog(settings)
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._reaper: asyncio.Task[None] | None = None

    def loaded(self) -> list[LoadedModel]:
        """List models in memory, least recently used first."""
        return list(self._loaded.values())

    def start(self) -> None:
        """Start the background task that unloads expired models."""
        self._reaper = asyncio.create_task(self._reap_forever())

    async def close(self) -> None:
        """Stop the reaper and unload everything."""
        if self._reaper:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for name in list(self._loaded):
            await self.unload(name)

    async def acquire(self, requested: str) -> tuple[LoadedModel, int]:
        """Return the loaded model for a name (loading it if needed) and the ns spent loading.

        The caller must call `release` when its request ends.
        """
        entry = self.catalog.resolve(requested)
        tic = time.perf_counter_ns()
        lock = self._locks.setdefault(entry.name, asyncio.Lock())
        # The lock makes concurrent first requests share one load instead of racing.
        async with lock:
            model = self._loaded.get(entry.name)
            if model is None:
                model = await self._load(entry)
            model.in_use += 1
            model.last_used = time.monotonic()
            self._loaded.move_to_end(entry.name)
        return model, time.perf_counter_ns() - tic

    def release(self, model: LoadedModel, keep_alive_s: float | None) -> None:
        """End one request's use of a model and apply its keep-alive."""
        model.in_use -= 1
        model.last_used = time.monotonic()
        self._set_keep_alive(model, keep_alive_s)
        if (
            model.in_use == 0
            and model.expires_at is not None
            and model.expires_at <= time.monotonic()
        ):
            # keep_alive 0: unload now, not at the reaper's next tick.
            asyncio.get_running_loop().create_task(self._unload_if_idle(model))

    def _set_keep_alive(self, model: LoadedModel, keep_alive_s: float | None) -> None:
        seconds = self.settings.default_keep_alive_s if keep_alive_s is None else keep_alive_s
        if seconds < 0:
            model.expires_at = model.expires_at_wall = None
        else:
            model.expires_at = time.monotonic() + seconds
            model.expires_at_wall = time.time() + seconds

    async def unload(self, name: str) -> bool:
        """Unload a model now (even if busy: its requests fail); tell whether it was loaded."""
        model = self._loaded.pop(name, None)
        if model is None:
            return False
        logger.info("unloading model %s", name)
        await model.engine.stop()
        return True

    async def unload_when_idle(self, requested: str) -> bool:
        """Unload a model once no request uses it (Ollama's empty prompt + keep_alive 0)."""
        entry = self.catalog.resolve(requested)
        model = self._loaded.get(entry.name)
        if model is None:
            return False
        self._set_keep_alive(model, 0)
        await self._unload_if_idle(model)
        return True

    async def _unload_if_idle(self, model: LoadedModel) -> None:
        if model.in_use == 0 and self._loaded.get(model.name) is model:
            await self.unload(model.name)

    async def _load(self, entry: ModelEntry) -> LoadedModel:
        """Make room under the memory budget, then start an engine that loads the model."""
        try:
            config = entry.config()
        except (OSError, ValueError) as exc:
            raise ModelLoadFailed(f"could not read model '{entry.name}': {exc}") from exc
        if not architecture_supported(config):
            raise UnsupportedModel(entry.name, config.get("model_type"))
        size = entry.size_bytes
        await self._make_room(size)
        logger.info("loading model %s from %s (%.1f MB)", entry.name, entry.path, size / 1e6)
        # Cached prefixes must not take a model past the memory budget on their own.
        budget = self.settings.memory_budget_bytes
        engine = Engine(
            entry.name,
            entry.path,
            loop=asyncio.get_running_loop(),
            max_batch_size=self.settings.max_batch_size,
            max_queue=self.settings.max_queue,
            retry_after_s=self.settings.retry_after_s,
            stream_interval_s=self.settings.stream_interval_ms / 1000,
            prompt_cache_entries=self.settings.prompt_cache_entries,
            prompt_cache_bytes=max(0, budget - size) if budget > 0 else None,
        )
        try:
            weights = await engine.start()
        except Exception as exc:
            raise ModelLoadFailed(f"could not load model '{entry.name}': {exc}") from exc
        model = LoadedModel(
            entry=entry,
            engine=engine,
            tokenizer=weights.tokenizer,
            config=weights.config,
            size_bytes=size,
            grammars=GrammarCompiler(weights.tokenizer, _vocab_size(weights)),
            embedding_size=weights.embedding_size,
        )
        self._set_keep_alive(model, None)
        self._loaded[entry.name] = model
        return model

    async def _make_room(self, incoming: int) -> None:
        """Unload least recently used idle models until `incoming` bytes fit the budget."""
        budget = self.settings.memory_budget_bytes
        if budget <= 0:
            return
        for model in list(self._loaded.values()):  # OrderedDict: LRU first
            if sum(m.size_bytes for m in self._loaded.values()) + incoming <= budget:
                return
            if model.in_use == 0:
                logger.info("unloading %s to stay under the memory budget", model.name)
                await self.unload(model.name)
        if sum(m.size_bytes for m in self._loaded.values()) + incoming > budget:
            # Busy models are never evicted mid-request; go over budget rather than fail.
            logger.warning("memory budget exceeded: every loaded model is busy")

    async def _reap_forever(self) -> None:
        """Unload idle models whose keep-alive has lapsed, checking every second."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for model in list(self._loaded.values()):
                if model.in_use == 0 and model.expires_at is not None and model.expires_at <= now:
                    await self._unload_if_idle(model)
