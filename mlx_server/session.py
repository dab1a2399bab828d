"""Run one request through its model's engine, as an async stream of text pieces.

Both protocols use this: they differ only in how they frame the pieces and the final
statistics. Leaving the `pieces()` iterator early (a stop sequence, a client that went
away, a cancelled task) always cancels the sequence in the engine, so its batch slot
is free by the next decode step.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request

from .embeddings import EmbeddingRequest, fit
from .engine import GenerationHandle
from .errors import ClientGone, GenerationFailed, InvalidRequest
from .grammar import GrammarProcessor
from .logprobs import TokenLogprobs
from .params import GenerationOptions, budget
from .prompts import encode_text, off_the_loop, refuse_what_cannot_fit
from .provider import LoadedModel, ModelProvider
from .sampling import make_sequence_sampler
from .textstream import TextAssembler

T = TypeVar("T")


@dataclass
class GenerationStats:
    """What the final chunk of either protocol reports, from tokens actually processed."""

    prompt_tokens: int
    completion_tokens: int = 0
    # Prompt tokens taken from the prompt cache instead of prefilled (prompt_cache.py).
    cached_tokens: int = 0
    finish_reason: str | None = None
    load_ns: int = 0
    started_ns: int = field(default_factory=time.perf_counter_ns)
    first_token_ns: int | None = None
    finished_ns: int | None = None
    token_ids: list[int] = field(default_factory=list)

    @property
    def prompt_eval_ns(self) -> int:
        """Time from submission to the first token: queueing plus prefill."""
        return max(0, (self.first_token_ns or self.started_ns) - self.started_ns)

    @property
    def eval_ns(self) -> int:
        """Time from the first token to the last."""
        if self.first_token_ns is None:
            return 0
        return max(0, (self.finished_ns or time.perf_counter_ns()) - self.first_token_ns)

    @property
    def total_ns(self) -> int:
        """Time from the request's arrival (load included) to the last token."""
        end = self.finished_ns or time.perf_counter_ns()
        return self.load_ns + max(0, end - self.started_ns)


class Generation:
    """One request's decode: submit to the engine, yield text, record statistics."""

    def __init__(
        self,
        model: LoadedModel,
        prompt_tokens: list[int],
        options: GenerationOptions,
        max_tokens: int,
        load_ns: int = 0,
        logits_processor: GrammarProcessor | None = None,
    ) -> None:
        self.model = model
        self.prompt_token_ids = prompt_tokens
        self.stats = GenerationStats(prompt_tokens=len(prompt_tokens), load_ns=load_ns)
        self.handle = GenerationHandle(
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            sampler=make_sequence_sampler(options.sampling),
            logits_processor=logits_processor,
            top_logprobs=options.top_logprobs,
        )
        # Log-probabilities of the tokens received and not yet taken by `take_logprobs`.
        self._logprobs: list[TokenLogprobs] = []
        self._text = TextAssembler(model.tokenizer, options.stop)

    def submit(self) -> None:
        """Claim a slot in the engine now, so overload is reported before any response starts."""
        self.model.engine.submit(self.handle)

    async def pieces(self) -> AsyncIterator[str]:
        """Yield text as it is decoded; stats are complete when the iterator ends."""
        handle = self.handle
        try:
            while True:
                events = [await handle.events.get()]
                # Take everything already delivered: a client that falls behind gets
                # fewer, larger chunks instead of a growing backlog.
                while not handle.events.empty():
                    events.append(handle.events.get_nowait())
                tokens: list[int] = []
                finish: str | None = None
                for event in events:
                    if isinstance(event, BaseException):
                        raise GenerationFailed(str(event))
                    tokens.append(event[0])
                    finish = event[1] or finish
                    if event[2] is not None:
                        self._logprobs.append(event[2])
                self.stats.token_ids.extend(tokens)
                self.stats.completion_tokens += len(tokens)
                text = self._text.add(tokens, final=finish is not None)
                if self._text.stopped:
                    finish = "stop"
                if finish is not None:
                    self.stats.finish_reason = finish
                    # Set by the engine before the first token, like first_token_ns.
                    self.stats.cached_tokens = handle.cached_tokens
                    self.stats.first_token_ns = handle.first_token_ns
                    self.stats.finished_ns = handle.finished_ns or time.perf_counter_ns()
                if text:
                    yield text
                if finish is not None:
                    return
        finally:
            # No-op when the engine already finished the sequence.
            self.model.engine.cancel(handle)
            if self.stats.finished_ns is None:
                self.stats.first_token_ns = handle.first_token_ns
                self.stats.finished_ns = time.perf_counter_ns()

    def take_logprobs(self) -> list[TokenLogprobs]:
        """Return the log-probabilities received since the last call (one per token)."""
        taken, self._logprobs = self._logprobs, []
        return taken

    async def text(self) -> str:
        """Collect the whole completion."""
        return "".join([piece async for piece in self.pieces()])


async def _wait_for_disconnect(request: Request) -> None:
    """Return when the client closes the connection (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work`, cancelling it if the client disconnects first (non-streaming answers).

    Without this, a non-streaming client that gives up would keep its sequence decoding
    to max_tokens (mlx_lm.server behaves that way).
    """
    task = asyncio.ensure_future(work())
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending
    if task in done:
        return task.result()
    raise ClientGone()


@dataclass
class Lease:
    """A started generation and the model it holds; call `release` exactly once."""

    model: LoadedModel
    generation: Generation
    keep_alive_s: float | None
    provider: ModelProvider
    _released: bool = False

    def close(self) -> None:
        """Cancel the generation if it still runs, then release the model (idempotent).

        Needed besides the `finally` of `pieces()`: a client that disconnects before the
        first chunk leaves that async generator unstarted, so its `finally` never runs.
        """
        self.model.engine.cancel(self.generation.handle)
        self.release()

    def release(self) -> None:
        """Give the model back to the provider, applying the request's keep-alive."""
        if not self._released:
            self._released = True
            self.provider.release(self.model, self.keep_alive_s)


async def start_generation(
    provider: ModelProvider,
    *,
    model_name: str,
    build_prompt: Callable[[LoadedModel], list[int]],
    prompt_chars: int,
    options: GenerationOptions,
    keep_alive_s: float | None,
    prompt_param: str,
    max_tokens_param: str,
    clamp: bool,
) -> Lease:
    """Load the model, encode the prompt, check it fits, and claim an engine slot.

    `prompt_chars` is the length of the text `build_prompt` will tokenise: a prompt that
    cannot fit is refused before any tokenising, and tokenising is done off the loop.
    """
    model, load_ns = await provider.acquire(model_name)
    try:
        longest = await off_the_loop(lambda: model.longest_token_chars)
        refuse_what_cannot_fit(
            prompt_chars, context=model.context_length, longest=longest, param=prompt_param
        )
        prompt_tokens = await off_the_loop(lambda: build_prompt(model))
        if not prompt_tokens:
            raise InvalidRequest(f"'{prompt_param}' must not be empty", param=prompt_param)
        max_tokens = budget(
            options.max_tokens,
            prompt_tokens=len(prompt_tokens),
            context=model.context_length,
            default=provider.settings.default_max_tokens,
            prompt_param=prompt_param,
            max_tokens_param=max_tokens_param,
            clamp=clamp,
        )
        processor = None
        if options.constraint is not None:
            # Off the loop: a new schema's grammar takes milliseconds to build (cached after).
            processor = await asyncio.to_thread(model.grammars.processor, options.constraint)
        generation = Generation(model, prompt_tokens, options, max_tokens, load_ns, processor)
        generation.submit()
    except BaseException:
        provider.release(model, keep_alive_s)
        raise
    return Lease(model, generation, keep_alive_s, provider)


@dataclass
class EmbeddingResult:
    """Vectors of one request, in input order, and what the answer reports about them."""

    vectors: list[Any]
    prompt_tokens: int
    load_ns: int
    total_ns: int


async def embed_inputs(
    provider: ModelProvider,
    model_name: str,
    request: EmbeddingRequest,
    *,
    keep_alive_s: float | None,
    param: str,
) -> EmbeddingResult:
    """Load the model, tokenize the inputs, and embed them on the model's engine thread."""
    started = time.perf_counter_ns()
    model, load_ns = await provider.acquire(model_name)
    try:
        if model.embedding_size is None:
            raise InvalidRequest(f"model '{model_name}' cannot produce embeddings", param="model")
        longest = await off_the_loop(lambda: model.longest_token_chars)
        texts: list[str | list[int]] = []
        for i, item in enumerate(request.inputs):
            if isinstance(item, tuple):
                if max(item) >= model.grammars.vocab_size:
                    raise InvalidRequest(
                        f"'{param}[{i}]' holds a token id outside the vocabulary",
                        param=f"{param}[{i}]",
                    )
                texts.append(list(item))
            elif request.truncate:
                # Cut what cannot fit before tokenising it: the tokens kept are the same.
                texts.append(item[: model.context_length * longest * 4])
            else:
                refuse_what_cannot_fit(
                    len(item), context=model.context_length, longest=longest, param=f"{param}[{i}]"
                )
                texts.append(item)

        def tokenize() -> list[list[int]]:
            return [t if isinstance(t, list) else encode_text(model.tokenizer, t) for t in texts]

        token_lists = await off_the_loop(tokenize)
        token_lists = fit(request, token_lists, model.context_length, model.embedding_size, param)
        vectors = await asyncio.wrap_future(model.engine.embed(token_lists))
    finally:
        provider.release(model, keep_alive_s)
    return EmbeddingResult(
        vectors,
        sum(len(t) for t in token_lists),
        load_ns,
        time.perf_counter_ns() - started,
    )
