"""Serve one generation through the router and render it in the client's protocol.

The response headers wait for the router's first event: until then a failure (including an
upstream that answered 200 and failed before any content) falls back inside the router, or
becomes an error response with the right status. Once the first content byte is out, a
failure ends the stream with an error in the client's protocol; it never falls back.

Whatever the router raises, the answer ends in the client's protocol: a routing error as
its status or error frame, anything else as a 500 (logged). A stream's producer hands the
exception itself to the writer (``_produce``), so no exception can leave the writer waiting.

A watcher task waits on ASGI ``receive`` for ``http.disconnect`` and cancels the request's
task, so a client that hangs up (before or during the answer) cancels the upstream call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from starlette.types import Receive, Scope, Send

from athena_admin.gateway.errors import GatewayError, internal_error
from routing import Finish, GenerationRequest, RoutingError, Started, StreamEvent, TextDelta

if TYPE_CHECKING:
    from athena_admin.gateway.app import Gateway
    from athena_admin.gateway.auth import Principal

__all__ = ["Renderer", "RoutedAnswer", "Timing", "error_message", "overhead_headers"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timing:
    """perf_counter() instants of one answer: arrival, first content (streams only), end."""

    started: float
    first_content: float | None
    ended: float


class Renderer(ABC):
    """One protocol's rendering of one answer (Ollama NDJSON, OpenAI SSE, JSON bodies)."""

    protocol: ClassVar[ModuleType]  # the protocol module: error_body, error_status
    media_type: ClassVar[bytes]
    stream_media_type: ClassVar[bytes]
    # routing's argument names -> this protocol's request fields, for 400 messages.
    field_names: ClassVar[dict[str, str]]

    def __init__(self, model: str, *, chat: bool) -> None:
        self.model = model
        self.chat = chat

    @abstractmethod
    def piece(self, text: str, first: bool) -> bytes:
        """Frame one piece of streamed text (``first``: the stream's first frame)."""

    @abstractmethod
    def stream_end(self, finish: Finish, timing: Timing, first: bool) -> bytes:
        """Frame the end of a stream: the final stats, the terminator."""

    @abstractmethod
    def stream_error(self, error: GatewayError) -> bytes:
        """Frame an error that ends a stream already under way."""

    @abstractmethod
    def whole(self, text: str, finish: Finish, timing: Timing) -> bytes:
        """Render a non-streamed answer's body."""


def overhead_headers(backend: str, overhead_s: float) -> list[tuple[bytes, bytes]]:
    """The two headers every response carries."""
    return [
        (b"x-athena-backend", backend.encode("latin-1", "replace")),
        (b"x-athena-overhead-ms", f"{max(overhead_s, 0.0) * 1000:.3f}".encode()),
    ]


def error_message(protocol: ModuleType, error: GatewayError) -> tuple[int, list[Any], bytes]:
    """An error response in a protocol: its status, headers (no overhead ones) and body."""
    body: bytes = protocol.error_body(error)
    headers = [
        (b"content-type", protocol.JSON_MEDIA_TYPE),
        (b"content-length", str(len(body)).encode()),
    ]
    if error.retry_after is not None:
        headers.append((b"retry-after", str(error.retry_after).encode()))
    return protocol.error_status(error), headers, body


def _backend_label(backend_type: str, endpoint_url: str, operator: bool) -> str:
    """X-Athena-Backend: the serving target; its internal URL for operators only."""
    return f"{backend_type} {endpoint_url}" if operator else backend_type


class _AnswerEndedEarly(Exception):
    """The router's events ended without a Finish (a bug in the router, never expected)."""


class RoutedAnswer:
    """An ASGI response that runs the request through the router while sending it."""

    def __init__(
        self,
        gateway: Gateway,
        request: GenerationRequest,
        renderer: Renderer,
        *,
        principal: Principal | None,
        started: float,
    ) -> None:
        self._gateway = gateway
        self._request = request
        self._renderer = renderer
        self._operator = principal is not None and principal.operator
        self._started = started
        self._finished = False
        self._gone = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.ensure_future(self._watch(receive, task))
        try:
            if self._request.stream:
                await self._stream(send)
            else:
                await self._whole(send)
        except asyncio.CancelledError:
            if not self._gone:
                raise
            # The client left: the router closed the upstream call; nothing more to send.
            task.uncancel()
        finally:
            self._finished = True
            watcher.cancel()

    async def _watch(self, receive: Receive, task: asyncio.Task[Any]) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not self._finished:
                    self._gone = True
                    task.cancel()
                return

    async def _error_for(self, exc: Exception) -> GatewayError:
        """The client's error for whatever the router raised."""
        if isinstance(exc, RoutingError):
            return await self._gateway.translate(
                exc, self._renderer.field_names, operator=self._operator, model=self._request.model
            )
        if isinstance(exc, _AnswerEndedEarly):
            return GatewayError(502, "the answer ended without final stats")
        logger.error("gateway: the router failed on '%s'", self._request.model, exc_info=exc)
        return internal_error()

    async def _send_error(self, send: Send, exc: Exception, waited: float) -> None:
        error = await self._error_for(exc)
        status, headers, body = error_message(self._renderer.protocol, error)
        overhead = time.perf_counter() - self._started - waited
        headers.extend(overhead_headers("none", overhead))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        self._finished = True
        await send({"type": "http.response.body", "body": body})

    async def _whole(self, send: Send) -> None:
        events = self._gateway.router.events(self._request)
        parts: list[str] = []
        finish: Finish | None = None
        begun = time.perf_counter()
        try:
            async for event in events:
                if type(event) is TextDelta:
                    parts.append(event.text)
                elif type(event) is Finish:
                    finish = event
            if finish is None:
                raise _AnswerEndedEarly
        except Exception as exc:
            await self._send_error(send, exc, time.perf_counter() - begun)
            return
        finally:
            await _close(events)
        ended = time.perf_counter()
        self._gateway.catalog.note_served(self._request.model)
        body = self._renderer.whole("".join(parts), finish, Timing(self._started, None, ended))
        headers = [
            (b"content-type", self._renderer.media_type),
            (b"content-length", str(len(body)).encode()),
            *overhead_headers(
                _backend_label(finish.backend_type, finish.endpoint_url, self._operator),
                time.perf_counter() - self._started - (ended - begun),
            ),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        self._finished = True
        await send({"type": "http.response.body", "body": body})

    async def _stream(self, send: Send) -> None:
        renderer = self._renderer
        # The router runs in a producer task feeding a queue, so that what it has already
        # produced when the client's socket is written goes out in one write: each upstream
        # chunk still becomes its own NDJSON line or SSE event, but a fast upstream's burst
        # costs one send instead of one per chunk. Sending each chunk as it came cost ~45%
        # more CPU per streamed request (bench/gateway_cpu.py, 16 chunks: ~1,160 us against
        # ~800 us). Nothing waits to fill a batch. The bound keeps backpressure: a slow
        # client stops the producer reading the upstream. (asyncio.Queue: a hand-made queue
        # saved ~6 us per stream, under 1%.)
        queue: asyncio.Queue[Any] = asyncio.Queue(64)
        begun = time.perf_counter()
        producer = asyncio.ensure_future(self._produce(queue))
        try:
            item = await queue.get()
            first_at = time.perf_counter()
            if isinstance(item, Exception):
                await self._send_error(send, item, first_at - begun)
                return
            # The router announces the serving target (Started) right before its first event
            # with content, so the headers can name it.
            label = "none"
            if type(item) is Started:
                target = item.target
                label = _backend_label(target.backend_type, target.endpoint_url, self._operator)
                item = await queue.get()
            overhead = time.perf_counter() - self._started - (first_at - begun)
            headers = [
                (b"content-type", renderer.stream_media_type),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),  # nginx: pass chunks on as they come
                *overhead_headers(label, overhead),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            first_content = first_at if type(item) is TextDelta else None
            parts: list[bytes] = []
            is_first = True
            while True:
                if type(item) is TextDelta:
                    parts.append(renderer.piece(item.text, is_first))
                    is_first = False
                elif type(item) is Finish:
                    self._gateway.catalog.note_served(self._request.model)
                    timing = Timing(self._started, first_content, time.perf_counter())
                    parts.append(renderer.stream_end(item, timing, is_first))
                    break
                elif isinstance(item, Exception):
                    parts.append(renderer.stream_error(await self._error_for(item)))
                    break
                if queue.empty():
                    await send(
                        {"type": "http.response.body", "body": b"".join(parts), "more_body": True}
                    )
                    parts.clear()
                    item = await queue.get()
                else:
                    item = queue.get_nowait()
            self._finished = True
            await send({"type": "http.response.body", "body": b"".join(parts)})
        finally:
            if not producer.done():
                producer.cancel()
                # Wait for the router to close the upstream call (and record the sample).
                await asyncio.wait([producer])

    async def _produce(self, queue: asyncio.Queue[Any]) -> None:
        """Feed the router's events to the writer, then one last item if no Finish came.

        The writer waits on the queue, so every way out of here but cancellation (which only
        the writer does) ends with an item it stops at: the exception raised, whatever its
        type, or _AnswerEndedEarly. That is what keeps a stream from hanging.
        """
        last: Exception = _AnswerEndedEarly()
        events: AsyncIterator[StreamEvent] | None = None
        try:
            events = self._gateway.router.events(self._request)
            async for event in events:
                await queue.put(event)
        except Exception as exc:
            last = exc
        finally:
            if events is not None:
                await _close(events)
        await queue.put(last)  # after a Finish, never read: the writer stopped there


async def _close(events: AsyncIterator[StreamEvent]) -> None:
    """Close the router's call (it records the sample); a failure to close is only logged."""
    try:
        await events.aclose()  # type: ignore[attr-defined]
    except Exception:
        logger.exception("gateway: closing the router's call failed")
