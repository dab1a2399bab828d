"""One engine thread per loaded model: it loads the model, then runs a continuous-batching loop.

Why a thread and not the event loop: a decode step is a blocking MLX evaluation (the
original sketch ran `generate` inside the async handler and stalled `/health`). MLX
releases the GIL while it evaluates, so the loop keeps answering between steps.

Threading contract:
- The event loop talks to the engine only through `_inbox` (a thread-safe queue of
  insert/cancel/stop commands). The engine drains it before every decode step, so a new
  request joins at the next step and a cancel takes effect within one step; when nothing
  is decoding the engine blocks on the queue instead of polling.
- The engine talks back only through an `EventRelay` (relay.py), which wakes the loop at
  most once per `stream_interval_s` for ordinary tokens.
- Admission counters (`_outstanding`) are touched only on the loop thread.

Scheduling: a request that finds the engine idle is decoded alone (solo.py: the per-step
work of `mlx_lm.generate_step`, without the batch's overhead); a second request moves it
into mlx-lm's BatchGenerator (batch.py), and when the batch drains to one decoding request
with nobody waiting to join, that one moves back. A request that joins a running batch
alone is prefilled by itself and gets its first token before it enters the batch (see
`_join`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx

from .batch import DecodeBatch
from .compat_mlx_lm import generation_stream, load
from .embeddings import embed
from .errors import GenerationFailed, Overloaded
from .prompt_cache import PrefixPool
from .relay import STREAM_INTERVAL_S, EventRelay, GenerationHandle, TokenEvent
from .solo import PREFILL_STEP, SoloSequence
from .stats import EngineStats

logger = logging.getLogger("mlx_server.engine")


@dataclass(frozen=True)
class LoadedWeights:
    """What the engine thread hands back once the model is in memory."""

    tokenizer: Any
    config: dict[str, Any]
    # Width of the pooled final hidden states (embeddings.py); None if they cannot be read.
    embedding_size: int | None = None


_INSERT, _CANCEL, _STOP, _EMBED = "insert", "cancel", "stop", "embed"


@dataclass(eq=False)
class EmbeddingJob:
    """Inputs to embed and the future the engine thread resolves with their vectors."""

    token_lists: list[list[int]]
    future: concurrent.futures.Future[list[Any]] = field(default_factory=concurrent.futures.Future)


_FAILED = "generation failed; see server log"
_UNLOADED = "model was unloaded"


def _hidden(model: Any) -> int | None:
    """Return the width of the model's final hidden states, if its inner model can be run
    on its own (mlx-lm's language models keep it as `.model`, with `args.hidden_size`)."""
    size = getattr(getattr(model, "args", None), "hidden_size", None)
    return size if callable(getattr(model, "model", None)) and isinstance(size, int) else None


class Engine:
    """Own one model: load it, batch-decode every request for it, unload it."""

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        loop: asyncio.AbstractEventLoop,
        max_batch_size: int,
        max_queue: int,
        retry_after_s: int = 1,
        stream_interval_s: float = STREAM_INTERVAL_S,
        prompt_cache_entries: int = 0,
        prompt_cache_bytes: int | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.stats = EngineStats()
        self._max_batch_size = max_batch_size
        self._capacity = max_batch_size + max_queue
        self._retry_after_s = retry_after_s
        self._inbox: queue.SimpleQueue[tuple[str, GenerationHandle | EmbeddingJob | None]] = (
            queue.SimpleQueue()
        )
        self._outstanding: set[GenerationHandle] = set()
        self._ready: concurrent.futures.Future[LoadedWeights] = concurrent.futures.Future()
        self._relay = EventRelay(loop, stream_interval_s, self._outstanding.discard)
        # Written by the engine thread only (its counters are read by /metrics).
        self.prompt_cache = PrefixPool(prompt_cache_entries, prompt_cache_bytes)
        self._thread = threading.Thread(target=self._run, name=f"mlx-engine-{name}", daemon=True)

    # ---- loop-thread API -------------------------------------------------------------

    async def start(self) -> LoadedWeights:
        """Start the thread and wait until the model is loaded."""
        self._thread.start()
        return await asyncio.wrap_future(self._ready)

    def submit(self, handle: GenerationHandle) -> None:
        """Queue a request, or raise Overloaded when the batch and queue are full."""
        if len(self._outstanding) >= self._capacity:
            raise Overloaded(
                f"model '{self.name}' is at capacity ({self._capacity} requests); retry later",
                retry_after_s=self._retry_after_s,
            )
        self._outstanding.add(handle)
        self._inbox.put((_INSERT, handle))

    def cancel(self, handle: GenerationHandle) -> None:
        """Drop a request from the batch; the engine frees its slot at the next step."""
        if handle.done:
            return
        handle.done = True
        self._outstanding.discard(handle)
        # Counted here, with `_outstanding`, so /health never shows a request gone from
        # `active_requests` but not yet in `requests_cancelled` (the engine thread may
        # take the command a while later on a busy machine).
        self.stats.cancelled += 1
        self._inbox.put((_CANCEL, handle))

    def embed(self, token_lists: list[list[int]]) -> concurrent.futures.Future[list[Any]]:
        """Queue inputs to embed (embeddings.py) between two decode steps; return their future."""
        job = EmbeddingJob(token_lists)
        self._inbox.put((_EMBED, job))
        return job.future

    async def stop(self) -> None:
        """Stop the thread (failing any request still running) and wait for it."""
        self._inbox.put((_STOP, None))
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)

    @property
    def active(self) -> int:
        """Count requests admitted and not yet finished."""
        return len(self._outstanding)

    @property
    def waiting(self) -> int:
        """Count admitted requests that have not produced a token yet."""
        return sum(1 for h in self._outstanding if h.first_token_ns is None)

    # ---- engine thread -----------------------------------------------------------------

    def _run(self) -> None:
        """Load the model, then decode until told to stop."""
        # MLX streams are per thread; mlx-lm's generation stream is thread-local, so
        # loading and decoding both happen here, never on the loop's thread.
        with mx.stream(generation_stream):
            try:
                tic = time.perf_counter()
                model, tokenizer, config = load(str(self.path), return_config=True)  # type: ignore[misc]
                logger.info(
                    "loaded model %s from %s in %.2fs",
                    self.name,
                    self.path,
                    time.perf_counter() - tic,
                )
            except BaseException as exc:  # noqa: BLE001 - reported to the waiting request
                logger.exception("failed to load model %s from %s", self.name, self.path)
                self._ready.set_exception(exc)
                return
            self._ready.set_result(
                LoadedWeights(tokenizer=tokenizer, config=config, embedding_size=_hidden(model))
            )
            eos = [[t] for t in sorted(tokenizer.eos_token_ids)]
            try:
                self._decode(model, eos)
            finally:
                self.prompt_cache.clear()  # a model's cached prefixes go with it
                del model
                mx.clear_cache()
                logger.info("unloaded model %s", self.name)

    def _take_commands(
        self, block: bool
    ) -> list[tuple[str, GenerationHandle | EmbeddingJob | None]]:
        """Drain the inbox; block for the first command only when the batch is idle."""
        commands = []
        if block:
            commands.append(self._inbox.get())
        while True:
            try:
                commands.append(self._inbox.get_nowait())
            except queue.Empty:
                return commands

    def _decode(self, model: Any, eos: list[list[int]]) -> None:
        """Run the decode loop until a stop command: alone for one request, batched for more."""
        batch = DecodeBatch(model, eos, self._max_batch_size)
        eos_ids = frozenset(t for (t,) in eos)
        # The request decoded alone (see solo.py), or None; never set while the batch is
        # not empty: a second request moves it into the batch first, and a batch drained
        # to one decoding request moves that one back here.
        solo: tuple[GenerationHandle, SoloSequence] | None = None
        try:
            while True:
                idle = not batch and solo is None
                if idle:
                    self._relay.flush()  # nothing is left to decode: deliver deferred tokens
                joiners: list[GenerationHandle] = []
                commands = self._take_commands(block=idle)
                for i, (kind, handle) in enumerate(commands):
                    if kind == _STOP:
                        running = [*batch.active.values(), *joiners, *([solo[0]] if solo else [])]
                        self._fail(running, _UNLOADED)
                        for _, later in commands[i + 1 :]:
                            if isinstance(later, EmbeddingJob):
                                later.future.set_exception(GenerationFailed(_UNLOADED))
                        return
                    if isinstance(handle, EmbeddingJob):
                        self._embed(model, handle)
                        continue
                    assert handle is not None
                    if kind == _INSERT:
                        if solo is None and not batch and not joiners:
                            solo = (handle, self._new_solo(model, handle))
                            continue
                        if solo is not None:
                            if self._hand_over(batch, *solo, eos_ids):
                                self.stats.moved_to_batch += 1
                            solo = None
                        joiners.append(handle)
                    elif solo is not None and solo[0] is handle:
                        self.prompt_cache.keep(solo[1].kept())
                        solo = None
                    elif handle in joiners:
                        joiners.remove(handle)
                    else:
                        batch.remove(handle)
                if joiners:
                    # Prefilling takes a while: tokens held back from fast steps must not
                    # wait for it.
                    self._relay.flush()
                    self._admit(model, batch, joiners, eos_ids)
                elif solo is None and (lone := batch.lone()) is not None:
                    # The inbox was just drained: nobody is waiting to join.
                    solo = self._take_back(model, batch, lone)
                self.stats.batch_size = len(batch) + (solo is not None)
                if solo is not None:
                    solo = self._advance_solo(*solo, eos_ids)
                elif batch:
                    self._step_batch(batch)
        finally:
            batch.close()

    def _embed(self, model: Any, job: EmbeddingJob) -> None:
        """Embed a job's inputs now: one forward pass per chunk, between two decode steps."""
        self._relay.flush()  # tokens held back must not wait for the forward passes
        try:
            job.future.set_result(embed(model, job.token_lists))
        except Exception:  # noqa: BLE001 - reported to that request only
            logger.exception("embedding failed for model %s", self.name)
            job.future.set_exception(GenerationFailed(_FAILED))

    def _admit(
        self,
        model: Any,
        batch: DecodeBatch,
        joiners: list[GenerationHandle],
        eos_ids: frozenset[int],
    ) -> None:
        """Put new requests into the batch: a lone one through `_join`, several as prompts
        (mlx-lm prefills them together in one forward pass).

        A long prompt is left to the batch too, which prefills a chunk per step so that
        the running sequences keep streaming; so is a request that finds the batch full,
        which must wait in mlx-lm's queue without a first token.
        """
        lone = joiners[0] if len(joiners) == 1 else None
        if (
            lone is not None
            and len(lone.prompt_tokens) <= PREFILL_STEP
            and len(batch) < self._max_batch_size
        ):
            self._join(model, batch, lone, eos_ids)
            return
        # These skip the prompt cache: prefixes are kept only from solo sequences (see
        # prompt_cache.py). BatchGenerator takes `caches=` at insert, so they could use it.
        for handle in joiners:
            self._insert(batch, handle, handle.prompt_tokens)

    def _join(
        self, model: Any, batch: DecodeBatch, handle: GenerationHandle, eos_ids: frozenset[int]
    ) -> None:
        """Prefill a lone newcomer by itself and send its first token, then batch it.

        Inserted as a prompt, it would get its first token three batch steps later (mlx-lm
        prefills it in one step, starts it in the next and returns its token in the
        third). Here the same forward passes run at once and its first token waits for
        none of the batch's steps; the batch continues from its cache.
        """
        solo = self._new_solo(model, handle)
        try:
            while not solo.decoding:
                solo.advance(eos_ids)
        except Exception:  # noqa: BLE001 - reported to that request only
            logger.exception("prefill failed for model %s", self.name)
            self._fail([handle], _FAILED)
            return
        self._hand_over(batch, handle, solo, eos_ids)

    def _new_solo(self, model: Any, handle: GenerationHandle) -> SoloSequence:
        """Start decoding a request alone (no MLX work yet: its prefill is the next step),
        from the prompt cache's longest match with its prompt, if any."""
        cache, cached = self.prompt_cache.take(handle.prompt_tokens)
        handle.cached_tokens = cached
        return SoloSequence(
            model,
            handle.prompt_tokens,
            handle.max_tokens,
            handle.sampler,
            cache,
            cached=cached,
            logits_processor=handle.logits_processor,
            top_logprobs=handle.top_logprobs,
        )

    def _advance_solo(
        self, handle: GenerationHandle, solo: SoloSequence, eos_ids: frozenset[int]
    ) -> tuple[GenerationHandle, SoloSequence] | None:
        """Run one prefill chunk or decode step of the solo request; None once it ends."""
        try:
            event = solo.advance(eos_ids)
        except Exception:  # noqa: BLE001 - one bad step must not kill the thread
            logger.exception("decode step failed for model %s", self.name)
            self._fail([handle], _FAILED)
            return None
        if event is None:
            return (handle, solo)  # a prefill chunk: no step of the metrics' batch
        self.stats.batch_sequences += 1
        self._publish_one(handle, event)
        if event[1] is None:
            return (handle, solo)
        self.prompt_cache.keep(solo.kept())
        return None

    def _hand_over(
        self,
        batch: DecodeBatch,
        handle: GenerationHandle,
        solo: SoloSequence,
        eos_ids: frozenset[int],
    ) -> bool:
        """Move the solo request into the batch, with its cache, budget and sampler.

        Return whether it went in (its token in flight may have been its last).
        """
        try:
            event, rest = solo.hand_over(eos_ids)
        except Exception:  # noqa: BLE001 - reading the token in flight failed
            logger.exception("decode step failed for model %s", self.name)
            self._fail([handle], _FAILED)
            return False
        if event is not None:
            self._publish_one(handle, event)
            if event[1] is not None:
                return False
        return self._insert(batch, handle, rest.unfed, rest.max_tokens, rest.cache)

    def _take_back(
        self, model: Any, batch: DecodeBatch, handle: GenerationHandle
    ) -> tuple[GenerationHandle, SoloSequence] | None:
        """Move the batch's last decoding request onto the solo path (see batch.py)."""
        try:
            row = batch.take_back(handle)
        except Exception:  # noqa: BLE001 - reported to that request only
            logger.exception("could not take a sequence out of the batch for model %s", self.name)
            batch.remove(handle)
            self._fail([handle], _FAILED)
            return None
        self.stats.moved_to_solo += 1
        solo = SoloSequence.resume(
            model,
            row.cache,
            row.pending,
            row.max_tokens,
            handle.sampler,
            handle.logits_processor,
            handle.top_logprobs,
            row.pending_logprobs,
        )
        return handle, solo

    def _step_batch(self, batch: DecodeBatch) -> None:
        """Run one batch step; after a failure, fail the batch and start a fresh one."""
        self.stats.batch_sequences += len(batch)
        try:
            events = batch.step()
        except Exception:  # noqa: BLE001 - one bad step must not kill the thread
            logger.exception("decode step failed for model %s", self.name)
            self._fail(batch.reset(), _FAILED)
            return
        self._publish(events)

    def _insert(
        self,
        batch: DecodeBatch,
        handle: GenerationHandle,
        prompt: list[int],
        max_tokens: int | None = None,
        cache: list[Any] | None = None,
    ) -> bool:
        """Add one request to the batch (prefilled during the next step); False if refused."""
        try:
            batch.insert(handle, prompt, max_tokens, cache)
        except Exception as exc:  # noqa: BLE001 - reported to that request only
            self._fail([handle], f"could not start generation: {exc}")
            return False
        return True

    def _publish(self, events: list[tuple[GenerationHandle, TokenEvent]]) -> None:
        """Record one step's tokens and hand them to the loop in a single callback."""
        if not events:
            return
        now = time.perf_counter_ns()
        # A first token (time to first token) or a last one (the answer completes) is
        # worth a wake of the loop on its own; other tokens may wait for the interval.
        urgent = False
        for handle, (_, finish, _) in events:
            urgent |= self._record(handle, finish, now)
        self.stats.tokens_generated += len(events)
        self.stats.steps += 1
        self._relay.send(list(events), urgent=urgent)

    def _publish_one(self, handle: GenerationHandle, event: TokenEvent) -> None:
        """Record and send one token of the solo request."""
        urgent = self._record(handle, event[1], time.perf_counter_ns())
        self.stats.tokens_generated += 1
        self.stats.steps += 1
        self._relay.send([(handle, event)], urgent=urgent)

    def _record(self, handle: GenerationHandle, finish: str | None, now: int) -> bool:
        """Stamp a request's first and last token; tell whether the loop should wake now."""
        urgent = False
        if handle.first_token_ns is None:
            handle.first_token_ns = now
            urgent = True
        if finish is not None:
            handle.finished_ns = now
            self.stats.completed += 1
            urgent = True
        return urgent

    def _fail(self, handles: list[GenerationHandle], message: str) -> None:
        """End requests with an error event."""
        if handles:
            error = GenerationFailed(message)
            self._relay.send([(h, error) for h in handles], urgent=True)
