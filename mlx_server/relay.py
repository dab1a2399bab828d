"""The hand-off from an engine thread to the event loop: request handles and their events.

The engine talks back only through `loop.call_soon_threadsafe`, with every request's
new tokens; `EventRelay._dispatch` then fills per-request asyncio queues. While one
callback is still waiting for the loop, later steps append to it instead of scheduling
another: a loop that falls behind then wakes once for several steps.

The loop is also woken at most once per `stream_interval_s` for ordinary tokens (first
tokens, last tokens and errors go at once). Each wake costs the loop a pass through every
stream's detokenizer, JSON framing and socket write, and the client a parse per chunk; on
a small model that decodes a token per millisecond, that per-token work competed with
decoding for the CPU (a 2-core box: 83% of raw single-stream speed). Grouping a few steps
per chunk cuts it several-fold and delays a token by at most the interval; a model slower
than the interval per step still streams every token.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .logprobs import TokenLogprobs
from .sampling import SeededSampler

# A sampled token, why the sequence ended on its last one ("length" or "stop" for EOS), and
# its log-probabilities when the request asked for them.
TokenEvent = tuple[int, str | None, TokenLogprobs | None]
# One item in a request's event queue: a token, or the exception that ended the sequence.
StepEvent = TokenEvent | BaseException

# Default for Engine(stream_interval_s=...): 5 ms between loop wakes is below what a person
# reading a stream can notice, and above a small model's step time on a CPU.
STREAM_INTERVAL_S = 0.005


@dataclass(eq=False)
class GenerationHandle:
    """One request's seat in an engine, shared by the loop thread and the engine thread."""

    prompt_tokens: list[int]
    max_tokens: int
    sampler: SeededSampler | None
    # mlx-lm's logits-processor signature, (tokens, logits) -> logits; a grammar's mask
    # (grammar.py) for a constrained answer, else None.
    logits_processor: Callable[[Any, Any], Any] | None = None
    # How many most-likely tokens to report with each sampled one; None: no logprobs at all.
    top_logprobs: int | None = None
    events: asyncio.Queue[StepEvent] = field(default_factory=asyncio.Queue)
    submitted_ns: int = field(default_factory=time.perf_counter_ns)
    # Written by the engine thread; read by the loop after the matching event arrives.
    first_token_ns: int | None = None
    # Prompt tokens whose KV cache came from the prompt cache instead of a prefill.
    cached_tokens: int = 0
    finished_ns: int | None = None
    # Loop thread only: set once the request has left the engine (finished or cancelled).
    done: bool = False
    uid: int | None = None


class EventRelay:
    """Carry events from the engine thread to the handles' queues, a few steps per wake."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stream_interval_s: float,
        on_finished: Callable[[GenerationHandle], None],
    ) -> None:
        self._loop = loop
        self._stream_interval_s = stream_interval_s
        self._on_finished = on_finished
        # Guarded by _lock: events not yet handed to the loop, whether a `_dispatch` is
        # scheduled, and when the engine last scheduled one.
        self._pending: list[tuple[GenerationHandle, StepEvent]] = []
        self._dispatch_scheduled = False
        self._last_wake = 0.0
        self._lock = threading.Lock()

    def send(self, events: list[tuple[GenerationHandle, StepEvent]], *, urgent: bool) -> None:
        """Queue events for the loop and schedule `_dispatch` (engine thread).

        Nothing is scheduled while a dispatch is due already, or, for non-urgent events,
        when the last was scheduled under `stream_interval_s` ago: held events then go
        with a later step's.
        """
        with self._lock:
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

    def flush(self) -> None:
        """Hand any held-back events to the loop now (engine thread)."""
        self.send([], urgent=True)

    def _dispatch(self) -> None:
        """Deliver pending events into the per-request queues (loop thread)."""
        with self._lock:
            events, self._pending = self._pending, []
            self._dispatch_scheduled = False
        for handle, event in events:
            if handle.done:
                continue  # cancelled: nobody reads its queue any more
            handle.events.put_nowait(event)
            if isinstance(event, BaseException) or event[1] is not None:
                handle.done = True
                self._on_finished(handle)
