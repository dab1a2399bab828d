"""Serve one generation through the router and render it in the client's protocol.

The response headers wait for the router's first event: until then a failure (including an
upstream that answered 200 and failed before any content) falls back inside the router, or
becomes a plain error response with the right status. Once the first content byte is out,
a failure ends the stream with an error in the client's protocol; it never falls back.

A watcher task waits on ASGI ``receive`` for ``http.disconnect`` and cancels the request's
task, so a client that hangs up (before or during the answer) cancels the upstream call.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from starlette.types import Receive, Scope, Send

from athena_admin.gateway.errors import GatewayError
from routing import Finish, GenerationRequest, RoutingError, Started, TextDelta

if TYPE_CHECKING:
    from athena_admin.gateway.app import Gateway

__all__ = ["Renderer", "RoutedAnswer", "Timing", "overhead_headers"]


@dataclass(frozen=True, slots=True)
class Timing:
    """perf_counter() instants of one answer: arrival, first content (streams only), end."""

    started: float
    first_content: float | None
    ended: float


class Renderer(ABC):
    """One protocol's rendering of one answer (Ollama NDJSON, OpenAI SSE, JSON bodies)."""

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

    @abstractmethod
    def error_body(self, error: GatewayError) -> bytes:
        """Render an error response's body."""


def overhead_headers(backend: str, overhead_s: float) -> list[tuple[bytes, bytes]]:
    """The two headers every response carries."""
    return [
        (b"x-athena-backend", backend.encode("latin-1", "replace")),
        (b"x-athena-overhead-ms", f"{max(overhead_s, 0.0) * 1000:.3f}".encode()),
    ]


def _backend_label(backend_type: str, endpoint_url: str) -> str:
    return f"{backend_type} {endpoint_url}"


class RoutedAnswer:
    """An ASGI response that runs the request through the router while sending it."""

    def __init__(self, gateway: Gateway, request: GenerationRequest, renderer: Renderer) -> None:
        self._gateway = gateway
        self._request = request
        self._renderer = renderer
        self._finished = False
        self._gone = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started: float = scope.get("athena.started") or time.perf_counter()
        # Send straight to the server: the outer wrapper's header injection is not needed.
        send = scope.get("athena.send", send)
        scope["athena.answered"] = True
        scope["athena.model"] = self._request.model  # for the gateway's request metrics
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.ensure_future(self._watch(receive, task))
        try:
            if self._request.stream:
                await self._stream(send, started)
            else:
                await self._whole(send, started)
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

    async def _error(self, send: Send, exc: RoutingError, started: float, waited: float) -> None:
        error = await self._gateway.translate(exc, self._renderer.field_names)
        body = self._renderer.error_body(error)
        headers = [
            (b"content-type", self._renderer.media_type),
            (b"content-length", str(len(body)).encode()),
            *overhead_headers("none", time.perf_counter() - started - waited),
        ]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        self._finished = True
        await send({"type": "http.response.body", "body": body})

    async def _whole(self, send: Send, started: float) -> None:
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
        except RoutingError as exc:
            await self._error(send, exc, started, time.perf_counter() - begun)
            return
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        ended = time.perf_counter()
        assert finish is not None  # the router always ends with one Finish
        self._gateway.catalog.note_served(self._request.model)
        body = self._renderer.whole("".join(parts), finish, Timing(started, None, ended))
        headers = [
            (b"content-type", self._renderer.media_type),
            (b"content-length", str(len(body)).encode()),
            *overhead_headers(
                _backend_label(finish.backend_type, finish.endpoint_url),
                time.perf_counter() - started - (ended - begun),
            ),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        self._finished = True
        await send({"type": "http.response.body", "body": body})

    async def _stream(self, send: Send, started: float) -> None:
        renderer = self._renderer
        # The router runs in a producer task feeding a queue, so that what it has already
        # produced when the client's socket is written goes out in one write: each upstream
        # chunk still becomes its own NDJSON line or SSE event, but a fast upstream's burst
        # costs one send instead of one per chunk. Nothing waits to fill a batch.
        queue = _Handoff(64)
        begun = time.perf_counter()
        producer = asyncio.ensure_future(self._produce(queue))
        try:
            item = await queue.get()
            first_at = time.perf_counter()
            if isinstance(item, RoutingError):
                await self._error(send, item, started, first_at - begun)
                return
            # The router announces the serving target (Started) right before its first event
            # with content, so the headers can name it.
            label = "none"
            if type(item) is Started:
                label = _backend_label(item.target.backend_type, item.target.endpoint_url)
                item = await queue.get()
            headers = [
                (b"content-type", renderer.stream_media_type),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),  # nginx: pass chunks on as they come
                *overhead_headers(label, time.perf_counter() - started - (first_at - begun)),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            first_content = first_at if type(item) is TextDelta else None
            parts: list[bytes] = []
            is_first = True
            while True:
                if type(item) is TextDelta:
                    parts.append(renderer.piece(item.text, is_first))
                    is_first = False
                elif isinstance(item, Finish):
                    self._gateway.catalog.note_served(self._request.model)
                    timing = Timing(started, first_content, time.perf_counter())
                    parts.append(renderer.stream_end(item, timing, is_first))
                    break
                else:
                    if not isinstance(item, RoutingError):
                        item = GatewayError(502, "the answer ended without final stats")
                    else:
                        item = await self._gateway.translate(item, renderer.field_names)
                    parts.append(renderer.stream_error(item))
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

    async def _produce(self, queue: _Handoff) -> None:
        events = self._gateway.router.events(self._request)
        try:
            async for event in events:
                await queue.put(event)
        except RoutingError as exc:
            await queue.put(exc)
            return
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        await queue.put(_END)  # only reached if the router ended without a Finish


_END = object()


class _Handoff:
    """The producer-to-writer queue of one stream: one producer, one consumer, bounded.

    Why not asyncio.Queue: it keeps counts for join() and lists of waiters for any number of
    tasks, which cost more than the rest of the gateway's work on a streamed chunk.
    The bound keeps backpressure: a slow client stops the producer reading the upstream.
    """

    __slots__ = ("_items", "_limit", "_getter", "_putter")

    def __init__(self, limit: int) -> None:
        self._items: deque[Any] = deque()
        self._limit = limit
        self._getter: asyncio.Future[None] | None = None
        self._putter: asyncio.Future[None] | None = None

    def empty(self) -> bool:
        return not self._items

    async def put(self, item: Any) -> None:
        while len(self._items) >= self._limit:
            self._putter = asyncio.get_running_loop().create_future()
            await self._putter
        self._items.append(item)
        _wake(self._getter)

    async def get(self) -> Any:
        while not self._items:
            self._getter = asyncio.get_running_loop().create_future()
            await self._getter
        return self.get_nowait()

    def get_nowait(self) -> Any:
        item = self._items.popleft()
        _wake(self._putter)
        return item


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
