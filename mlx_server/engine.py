"""One engine thread per loaded model: it loads the model, then runs a continuous-batching loop.

Why a thread and not the event loop: a decode step is a blocking MLX evaluation (the
original sketch ran `generate` inside the async handler and stalled `/health`). MLX
releases the GIL while it evaluates, so the loop keeps answering between steps.

Threading contract:
- The event loop talks to the engine only through `_inbox` (a thread-safe queue of
  insert/cancel/stop commands). The engine drains it before every decode step, so a new
  request joins the running batch at the next step and a cancel takes effect within one
  step; when the batch is empty the engine blocks on the queue instead of polling.
- The engine talks back only through `loop.call_soon_threadsafe`, with every request's
  new tokens; `_dispatch` then fills per-request asyncio queues. While one callback is
  still waiting for the loop, later steps append to it instead of scheduling another:
  a loop that falls behind then wakes once for several steps.
- The loop is also woken at most once per `stream_interval_s` for ordinary tokens (first
  tokens, last tokens and errors go at once). Each wake costs the loop a pass through
  every stream's detokenizer, JSON framing and socket write, and the client a parse per
  chunk; on a small model that decodes a token per millisecond, that per-token work
  competed with decoding for the CPU (a 2-core box: 83% of raw single-stream speed).
  Grouping a few steps per chunk cuts it several-fold and delays a token by at most the
  interval; a model slower than the interval per step still streams every token.
- Admission counters (`_outstanding`) are touched only on the loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm.generate import BatchGenerator, generation_stream
from mlx_lm.utils import load

from .errors import GenerationFailed, Overloaded
from .sampling import SeededSampler

logger = logging.getLogger("mlx_server.engine")

# One item in a request's event queue: a sampled token and, on the last one, why the
# sequence ended ("length" or "stop" for EOS); or the exception that ended it.
StepEvent = tuple[int, str | None] | BaseException

# Default for Engine(stream_interval_s=...): 5 ms between loop wakes is below what a person
# reading a stream can notice, and above a small model's step time on a CPU.
STREAM_INTERVAL_S = 0.005


@dataclass(eq=False)
class GenerationHandle:
    """One request's seat in an engine, shared by the loop thread and the engine thread."""

    prompt_tokens: list[int]
    max_tokens: int
    sampler: SeededSampler | None
    events: asyncio.Queue[StepEvent] = field(default_factory=asyncio.Queue)
    submitted_ns: int = field(default_factory=time.perf_counter_ns)
    # Written by the engine thread; read by the loop after the matching event arrives.
    first_token_ns: int | None = None
    finished_ns: int | None = None
    # Loop thread only: set once the request has left the engine (finished or cancelled).
    done: bool = False
    uid: int | None = None


@dataclass(frozen=True)
class LoadedWeights:
    """What the engine thread hands back once the model is in memory."""

    tokenizer: Any
    config: dict[str, Any]


@dataclass
class EngineStats:
    """Counters for /health; ints written by the engine thread (`cancelled`: by the loop),
    read anywhere."""

    tokens_generated: int = 0
    completed: int = 0
    cancelled: int = 0
    steps: int = 0
    # Sequences in the batch now, and summed over every step (their ratio to `steps` is the
    # mean batch size): read by /metrics.
    batch_size: int = 0
    batch_sequences: int = 0


_INSERT, _CANCEL, _STOP = "insert", "cancel", "stop"


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
    ) -> None:
        self.name = name
        self.path = path
        self.stats = EngineStats()
        self._loop = loop
        self._max_batch_size = max_batch_size
        self._capacity = max_batch_size + max_queue
        self._retry_after_s = retry_after_s
        self._inbox: queue.SimpleQueue[tuple[str, GenerationHandle | None]] = queue.SimpleQueue()
        self._outstanding: set[GenerationHandle] = set()
        self._ready: concurrent.futures.Future[LoadedWeights] = concurrent.futures.Future()
        self._stream_interval_s = stream_interval_s
        # Guarded by _pending_lock: events not yet handed to the loop, whether a
        # `_dispatch` is scheduled, and when the engine last scheduled one.
        self._pending: list[tuple[GenerationHandle, StepEvent]] = []
        self._dispatch_scheduled = False
        self._last_wake = 0.0
        self._pending_lock = threading.Lock()
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

    def _dispatch(self) -> None:
        """Deliver pending events into the per-request queues (runs on the loop)."""
        with self._pending_lock:
            events, self._pending = self._pending, []
            self._dispatch_scheduled = False
        for handle, event in events:
            if handle.done:
                continue  # cancelled: nobody reads its queue any more
            handle.events.put_nowait(event)
            if isinstance(event, BaseException) or event[1] is not None:
                handle.done = True
                self._outstanding.discard(handle)

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
            self._ready.set_result(LoadedWeights(tokenizer=tokenizer, config=config))
            eos = [[t] for t in sorted(tokenizer.eos_token_ids)]
            try:
                self._decode(model, eos)
            finally:
                del model
                mx.clear_cache()
                logger.info("unloaded model %s", self.name)

    def _new_generator(self, model: Any, eos: list[list[int]]) -> BatchGenerator:
        """Build mlx-lm's continuous batcher for this model."""
        return BatchGenerator(
            model,
            stop_tokens=eos,
            completion_batch_size=self._max_batch_size,
            prefill_batch_size=min(8, self._max_batch_size),
        )

    def _take_commands(self, block: bool) -> list[tuple[str, GenerationHandle | None]]:
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
        """Run the batched decode loop until a stop command."""
        generator = self._new_generator(model, eos)
        active: dict[int, GenerationHandle] = {}
        try:
            while True:
                if not active:
                    self._flush()  # nothing is left to decode: deliver deferred tokens
                inserted = False
                for kind, handle in self._take_commands(block=not active):
                    if kind == _STOP:
                        self._fail(list(active.values()), "model was unloaded")
                        return
                    assert handle is not None
                    if kind == _INSERT:
                        self._insert(generator, active, handle)
                        inserted = True
                    elif handle.uid is not None and handle.uid in active:
                        generator.remove([handle.uid])
                        del active[handle.uid]
                self.stats.batch_size = len(active)
                if not active:
                    continue
                if inserted:
                    # The next step prefills a prompt and may take long: tokens held back
                    # from fast steps must not wait for it.
                    self._flush()
                self.stats.batch_sequences += len(active)
                try:
                    _, responses = generator.next()
                except Exception:  # noqa: BLE001 - one bad step must not kill the thread
                    logger.exception("decode step failed for model %s", self.name)
                    self._fail(list(active.values()), "generation failed; see server log")
                    active.clear()
                    generator.close()
                    generator = self._new_generator(model, eos)
                    continue
                self._publish(active, responses)
        finally:
            generator.close()

    def _insert(
        self,
        generator: BatchGenerator,
        active: dict[int, GenerationHandle],
        handle: GenerationHandle,
    ) -> None:
        """Add one request to the batch; it is prefilled during the next step."""
        try:
            # A None sampler selects the batch's shared greedy sampler (see sampling.py).
            (uid,) = generator.insert(
                [handle.prompt_tokens],
                [handle.max_tokens],
                samplers=[handle.sampler],  # type: ignore[list-item]
            )
        except Exception as exc:  # noqa: BLE001 - reported to that request only
            self._fail([handle], f"could not start generation: {exc}")
            return
        handle.uid = uid
        active[uid] = handle

    def _publish(self, active: dict[int, GenerationHandle], responses: list[Any]) -> None:
        """Record one step's tokens and hand them to the loop in a single callback."""
        if not responses:
            return
        now = time.perf_counter_ns()
        events: list[tuple[GenerationHandle, StepEvent]] = []
        # A first token (time to first token) or a last one (the answer completes) is
        # worth a wake of the loop on its own; other tokens may wait for the interval.
        urgent = False
        for response in responses:
            handle = active.get(response.uid)
            if handle is None:
                continue
            if handle.first_token_ns is None:
                handle.first_token_ns = now
                urgent = True
            if response.finish_reason is not None:
                handle.finished_ns = now
                del active[response.uid]
                self.stats.completed += 1
                urgent = True
            events.append((handle, (response.token, response.finish_reason)))
        self.stats.tokens_generated += len(events)
        self.stats.steps += 1
        self._send(events, urgent=urgent)

    def _fail(self, handles: list[GenerationHandle], message: str) -> None:
        """End requests with an error event."""
        if handles:
            error = GenerationFailed(message)
            self._send([(h, error) for h in handles], urgent=True)

    def _flush(self) -> None:
        """Hand any held-back events to the loop now."""
        self._send([], urgent=True)

    def _send(self, events: list[tuple[GenerationHandle, StepEvent]], *, urgent: bool) -> None:
        """Queue events for the loop and schedule `_dispatch`, unless one is due already
        or (for non-urgent events) the last was scheduled under `stream_interval_s` ago;
        held events then go with a later step's."""
        with self._pending_lock:
            self._pending.extend(events)
            if self._dispatch_scheduled or not self._pending:
                return
            now = time.perf_counter()
            if not urgent and now - self._last_wake < self._stream_interval_s:
                return
            self._dispatch_scheduled = True
            self._last_wake = now
        # RuntimeError: the loop is closed because the server is exiting.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._dispatch)
