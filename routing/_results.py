"""What a caller gets back: the plan's result dict and the stream of an answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

from routing._types import Finish, GenerateResult, StreamEvent, TextDelta

__all__ = ["ResponseStream", "build_result"]


def build_result(finish: Finish, text: str) -> GenerateResult:
    """Render a finished call as the plan's result dict (plus routing stats)."""
    return {
        "response": text,
        "model": finish.model,
        "backend": finish.backend_type,
        "done": True,
        "done_reason": finish.finish_reason,
        "total_duration": finish.total_duration_ns
        if finish.total_duration_ns is not None
        else int(finish.latency_ms * 1e6),
        "eval_count": finish.completion_tokens,
        "prompt_eval_count": finish.prompt_tokens,
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "latency_ms": finish.latency_ms,
        "ttft_ms": finish.ttft_ms,
        "tokens_per_sec": finish.tokens_per_sec,
        "endpoint_url": finish.endpoint_url,
        "upstream_model": finish.upstream_model or "",
        "entry_id": finish.entry_id,
        "fallback": finish.fallback,
        "message": {"role": "assistant", "content": text},
    }


class ResponseStream:
    """An answer being streamed: ``async for text in stream`` yields text as it arrives.

    When the loop ends, ``result`` holds the same dict generate() returns. ``events()``
    gives the typed events instead (Started, TextDelta..., Finish) for re-rendering.
    Use ``async with`` (or ``aclose()``) to close the upstream stream when stopping early.
    """

    def __init__(self, events: AsyncIterator[StreamEvent], *, chat: bool) -> None:
        self._events = events
        self._parts: list[str] = []
        self.chat = chat
        self.result: GenerateResult | None = None
        self.finish: Finish | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        return self._texts()

    async def _texts(self) -> AsyncIterator[str]:
        # One loop (events()) records the text and the result; this only picks the text out.
        # The extra generator layer costs about 2 us per 16-chunk answer (measured against a
        # copy of the loop: 9.8 vs 11.9 us), which is not worth a second copy of the loop.
        async for event in self.events():
            if type(event) is TextDelta:
                yield event.text

    async def events(self) -> AsyncIterator[StreamEvent]:
        """Yield the typed events: Started, TextDelta..., then Finish."""
        parts = self._parts
        async for event in self._events:
            if type(event) is TextDelta:
                parts.append(event.text)
            elif type(event) is Finish:
                self.finish = event
                self.result = build_result(event, "".join(parts))
            yield event

    async def aclose(self) -> None:
        """Stop the stream and close its upstream connection."""
        await self._events.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> ResponseStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
