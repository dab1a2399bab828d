"""LLMRouter: resolve a model to its chain of targets and serve the call from the first that works."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from routing._answers import (
    check_finish,
    checked_text,
    close_quietly,
    first_content,
    malformed,
    not_an_event,
    whole_answer,
)
from routing._backends import Backend, backend_class
from routing._backends._base import DEFAULT_MAX_ANSWER_BYTES, DEFAULT_MAX_LINE_BYTES
from routing._breaker import BreakerBoard
from routing._client import build_client, checked_networks
from routing._environment import router_options_from_environment
from routing._exceptions import (
    AllTargetsFailed,
    InternalError,
    InvalidRequest,
    RouterClosed,
    RoutingError,
    StreamInterrupted,
    TargetFailure,
    UpstreamError,
    UpstreamProtocolError,
)
from routing._metrics import SampleShipper
from routing._results import ResponseStream, build_result
from routing._routes import RouteTable, load_routes_file
from routing._types import (
    Finish,
    GenerateResult,
    GenerationRequest,
    Route,
    Started,
    StreamEvent,
    Target,
    TextDelta,
    check_model_name,
)

__all__ = ["LLMRouter", "get_llm_router"]

logger = logging.getLogger("routing")

DEFAULT_ADMIN_URL = "http://localhost:8080"
DEFAULT_OLLAMA_URL = "http://localhost:11434"


class LLMRouter:
    """Routes LLM calls to the backends configured per model, with fallback and metrics.

    Share one router between tasks, threads and event loops, and close it with ``aclose()``
    (or ``async with``). Everything is configured here; only ``get_llm_router()`` reads the
    environment.

    The parts bound to an event loop (the pooled HTTP client and the task that ships metric
    samples) are made per loop, on the first call in it, and closed when that loop shuts
    down; routes, their cache and the circuit breakers are shared by all loops.
    """

    def __init__(
        self,
        admin_url: str | None = DEFAULT_ADMIN_URL,
        *,
        service_key: str | None = None,
        routes_file: str | Path | None = None,
        cache_ttl: float = 60.0,
        admin_timeout: float = 2.0,
        default_ollama_url: str = DEFAULT_OLLAMA_URL,
        use_default_route: bool = True,
        connect_timeout: float = 5.0,
        max_connections: int = 200,
        max_keepalive_connections: int = 64,
        keepalive_expiry: float = 30.0,
        breaker_threshold: int = 3,
        breaker_cooldown: float = 2.0,
        breaker_max_cooldown: float = 60.0,
        metrics: bool = True,
        metrics_buffer: int = 10_000,
        metrics_batch: int = 500,
        metrics_interval: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
        on_sample: Callable[[Mapping[str, Any]], None] | None = None,
        allowed_networks: Sequence[str] | None = None,
        proxies: Mapping[str, str | None] | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self._limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive_connections,
            keepalive_expiry=keepalive_expiry,
        )
        if max_answer_bytes <= 0 or max_line_bytes <= 0:
            raise InvalidRequest("max_answer_bytes and max_line_bytes must be positive")
        self._transport = transport
        self._allowed_networks = checked_networks(allowed_networks)
        self._proxies = proxies
        self._connect_timeout = connect_timeout
        self._max_answer_bytes = max_answer_bytes
        self._max_line_bytes = max_line_bytes
        self._metrics_url = admin_url if metrics else None
        self._service_key = service_key
        self._metrics_buffer = metrics_buffer
        self._metrics_batch = metrics_batch
        self._metrics_interval = metrics_interval
        file_routes = (
            load_routes_file(routes_file, default_ollama_url=default_ollama_url)
            if routes_file
            else {}
        )
        self._routes = RouteTable(
            client=lambda: self._session().client,
            admin_url=admin_url,
            service_key=service_key,
            ttl=cache_ttl,
            admin_timeout=admin_timeout,
            file_routes=file_routes,
            default_ollama_url=default_ollama_url,
            use_default_route=use_default_route,
        )
        self._breakers = BreakerBoard(
            threshold=breaker_threshold,
            base_cooldown=breaker_cooldown,
            max_cooldown=breaker_max_cooldown,
        )
        # Called with every attempt's sample (the dict shipped to the admin), even with
        # metrics shipping off: how a host process (the gateway) feeds its own metrics.
        self._on_sample = on_sample
        self._sessions: dict[asyncio.AbstractEventLoop, _LoopSession] = {}
        self._last: _LoopSession | None = None  # the session used last: the common case
        self._lock = threading.Lock()  # guards _sessions across threads
        self._retired_dropped = 0  # samples lost by sessions already gone
        self._closed = False

    # -- one session per event loop --------------------------------------------------------

    def _session(self) -> _LoopSession:
        """Return the running loop's session (client, backends, metrics), making it if new."""
        loop = asyncio.get_running_loop()
        session = self._last
        if session is not None and session.loop is loop and not self._closed:
            return session
        with self._lock:
            self._check_open()
            session = self._sessions.get(loop)
            if session is None:
                self._forget_closed_loops()
                session = self._sessions[loop] = self._open_session(loop)
        self._last = session
        return session

    def _open_session(self, loop: asyncio.AbstractEventLoop) -> _LoopSession:
        client = build_client(
            limits=self._limits,
            connect_timeout=self._connect_timeout,
            transport=self._transport,
            allowed_networks=self._allowed_networks,
            proxies=self._proxies,
        )
        metrics = SampleShipper(
            client=client,
            admin_url=self._metrics_url,
            service_key=self._service_key,
            max_buffer=self._metrics_buffer,
            batch_size=self._metrics_batch,
            interval=self._metrics_interval,
        )
        session = _LoopSession(loop, client, metrics, self)
        session.task = loop.create_task(self._keep(session), name="routing-session")
        return session

    async def _keep(self, session: _LoopSession) -> None:
        """Ship the loop's samples; when the loop shuts down, flush them and close its client.

        Why on cancellation: ``asyncio.run()`` ends by cancelling the tasks left and running
        them to their end, so a caller that never calls ``aclose()`` (three ``asyncio.run``
        calls in a script, a Celery task) still gets its samples sent and its connections
        closed on their own loop.
        """
        try:
            await session.metrics.run()
        except asyncio.CancelledError:
            if not session.closing:
                await self._close_session(session)
            raise

    async def _close_session(self, session: _LoopSession) -> None:
        """Close one loop's session from inside that loop: last flush (bounded), then the client."""
        session.closing = True
        with self._lock:
            if self._sessions.get(session.loop) is session:
                del self._sessions[session.loop]
            if self._last is session:
                self._last = None
        task = session.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await session.metrics.aclose()
            await session.client.aclose()
        finally:
            self._retired_dropped += session.metrics.dropped + session.metrics.buffered

    def _forget_closed_loops(self) -> None:
        """Drop sessions whose loop was closed without shutting its tasks down (samples lost)."""
        for loop, session in list(self._sessions.items()):
            if loop.is_closed():
                del self._sessions[loop]
                self._retired_dropped += session.metrics.dropped + session.metrics.buffered

    # -- public calls ----------------------------------------------------------------------

    async def generate(
        self,
        model: str,
        prompt: str,
        temperature: float | None = None,
        max_tokens: int | None = None,
        *,
        system: str | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
    ) -> GenerateResult:
        """Complete a prompt; return the text with where and how fast it was served."""
        request = _build(
            model=model,
            prompt=prompt,
            system=system,
            temperature=temperature,
            max_tokens=max_tokens,
            top_p=top_p,
            stop=stop,
            seed=seed,
        )
        return await self._collect(request)

    async def chat(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        temperature: float | None = None,
        max_tokens: int | None = None,
        *,
        system: str | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
    ) -> GenerateResult:
        """Answer a conversation; the result's ``message`` is the assistant's reply."""
        request = _build(
            model=model,
            messages=messages,
            system=system,
            temperature=temperature,
            max_tokens=max_tokens,
            top_p=top_p,
            stop=stop,
            seed=seed,
        )
        return await self._collect(request)

    def stream(
        self,
        model: str,
        prompt: str,
        temperature: float | None = None,
        max_tokens: int | None = None,
        *,
        system: str | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
    ) -> ResponseStream:
        """Complete a prompt, yielding text as it arrives; ``.result`` holds the stats after."""
        request = _build(
            model=model,
            prompt=prompt,
            system=system,
            temperature=temperature,
            max_tokens=max_tokens,
            top_p=top_p,
            stop=stop,
            seed=seed,
            stream=True,
        )
        return ResponseStream(self.events(request), chat=False)

    def stream_chat(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        temperature: float | None = None,
        max_tokens: int | None = None,
        *,
        system: str | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
    ) -> ResponseStream:
        """Answer a conversation, yielding text as it arrives; ``.result`` holds the stats after."""
        request = _build(
            model=model,
            messages=messages,
            system=system,
            temperature=temperature,
            max_tokens=max_tokens,
            top_p=top_p,
            stop=stop,
            seed=seed,
            stream=True,
        )
        return ResponseStream(self.events(request), chat=True)

    async def route(self, model: str) -> Route:
        """Return the model's current chain of targets (cached)."""
        check_model_name(model)
        self._session()
        try:
            return await self._routes.get(model)
        except RoutingError:
            raise
        except Exception as exc:
            raise _internal_error(exc) from exc

    async def routes(self) -> list[Route]:
        """List every configured route: the routes file's, then the admin's."""
        self._session()
        try:
            return await self._routes.fetch_all()
        except RoutingError:
            raise
        except Exception as exc:
            raise _internal_error(exc) from exc

    def backend(self, kind: str) -> Backend | None:
        """Return the running loop's instance of a backend kind (sharing its client), or None."""
        return self._session().backend(kind)

    async def flush_metrics(self) -> bool:
        """Send the running loop's buffered samples now; False if the admin could not take them."""
        return await self._session().metrics.flush()

    @property
    def metrics_dropped(self) -> int:
        """Samples lost because the buffer was full or the admin rejected them."""
        sessions = list(self._sessions.values())
        return self._retired_dropped + sum(s.metrics.dropped for s in sessions)

    @property
    def admin_lookups(self) -> int:
        """Route look-ups sent to the admin so far."""
        return self._routes.admin_lookups

    @property
    def metrics_buffered(self) -> int:
        """Samples waiting to be sent to the admin."""
        return sum(s.metrics.buffered for s in list(self._sessions.values()))

    def route_ages(self) -> dict[str, float]:
        """Seconds since each cached route was fetched (or revalidated) from the admin.

        Routes from a routes file are left out (they never age); a route served from the
        cache during an admin outage keeps ageing, which is what makes the outage visible.
        """
        return self._routes.ages()

    def cached_routes(self) -> list[Route]:
        """Every route known without a look-up (routes file and cache), e.g. during an outage."""
        return self._routes.known_routes()

    def has_route(self, model: str) -> bool:
        """Whether the model has a known route now (routes file or cache), without a look-up."""
        return self._routes.has_route(model)

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Flush metrics (bounded) and close the connection pools, of every loop's session.

        The running loop's session is closed here; one of a loop running in another thread
        is closed in that loop, without waiting for it; one of a closed loop has nothing
        left to close.
        """
        if self._closed:
            return
        with self._lock:
            self._closed = True
            sessions = list(self._sessions.values())
        loop = asyncio.get_running_loop()
        for session in sessions:
            if session.loop is loop:
                await self._close_session(session)
            elif session.loop.is_running():
                asyncio.run_coroutine_threadsafe(self._close_session(session), session.loop)

    async def __aenter__(self) -> LLMRouter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the routing loop ------------------------------------------------------------------

    async def events(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        """Serve a request: yield Started, TextDelta events, then one Finish with the stats.

        ``Started(target, fallback)`` comes once, right before the first TextDelta (or before
        the Finish of an answer with no text), when the serving target is known.

        Targets are tried in order. A target fails over to the next on a connection error,
        timeout (its first-content deadline included), 429, 5xx or broken answer, but only
        while no text has been yielded; any other 4xx is raised at once. Targets marked
        ``down`` are skipped unless all are; targets with an open circuit are skipped, except
        the last one. Whatever is raised comes out as a RoutingError (see routing._exceptions).
        """
        try:
            session = self._session()
            route = await self._routes.get(request.model)
            targets = _targets_to_try(route.targets)
            primary = route.targets[0] if route.targets else None
            failures: list[TargetFailure] = []
            last = len(targets) - 1
            for i, target in enumerate(targets):
                backend = session.backend(target.backend_type)
                if backend is None:
                    failures.append(
                        TargetFailure(
                            target,
                            "unknown_backend",
                            f"unknown backend type '{target.backend_type}'",
                        )
                    )
                    continue
                breaker = self._breakers.get(target.key)
                if not breaker.allow() and i < last:
                    failures.append(
                        TargetFailure(
                            target, "circuit_open", "skipped: circuit open after repeated failures"
                        )
                    )
                    continue
                fallback = target is not primary
                started_wall = time.time()
                started = time.perf_counter()
                ttft: float | None = None
                chars = 0
                finish: Finish | None = None
                upstream = backend.events(target, request)
                try:
                    if not request.stream:
                        # Nothing reaches the caller before the whole answer is read and
                        # checked, so a malformed answer still falls back.
                        pieces, finish = await whole_answer(upstream, target)
                        yield Started(target, fallback)
                        for piece in pieces:
                            yield piece
                    elif isinstance(first := await first_content(upstream, target), Finish):
                        finish = check_finish(first, target)
                        yield Started(target, fallback)  # an answer with no text
                    else:
                        ttft = time.perf_counter() - started
                        # From here on this target serves the call (no fallback after text).
                        yield Started(target, fallback)
                        chars = len(first.text)
                        yield first
                        async for event in upstream:
                            if type(event) is TextDelta:
                                if type(event.text) is not str or not event.text.isascii():
                                    event = checked_text(event, target)
                                if event.text:  # Started promised content: an empty piece is none
                                    chars += len(event.text)
                                    yield event
                            elif type(event) is Finish:
                                finish = event
                            else:
                                raise not_an_event(event, target)
                        if finish is None:
                            raise UpstreamProtocolError(
                                "answer ended without final stats", target=target
                            )
                        check_finish(finish, target)
                except (asyncio.CancelledError, GeneratorExit):
                    breaker.record_neutral()
                    self._sample(
                        session,
                        request,
                        target,
                        started_wall,
                        started,
                        ttft,
                        None,
                        fallback,
                        "cancelled",
                        None,
                    )
                    raise
                except Exception as exc:
                    # Whatever went wrong while this target answered is this target's failure:
                    # an UpstreamError from the backend, or anything else (an answer of the
                    # wrong shape that a backend did not expect) as a protocol error.
                    error = exc if isinstance(exc, UpstreamError) else malformed(exc, target)
                    if error.overloaded:
                        breaker.record_neutral()  # at capacity, not broken
                    elif error.retryable:
                        breaker.record_failure()
                    else:
                        breaker.record_success()  # a 4xx proves the target alive
                    self._sample(
                        session,
                        request,
                        target,
                        started_wall,
                        started,
                        ttft,
                        None,
                        fallback,
                        error.error_kind,
                        error.status_code,
                        overload=error.overloaded,
                    )
                    if chars:
                        raise StreamInterrupted(error, chars) from exc
                    if not error.retryable:  # only an UpstreamError of the backend's own
                        raise  # exc itself: malformed() errors are always retryable
                    logger.info(
                        "routing: %s failed for '%s', trying the next target: %s",
                        target.backend_type,
                        request.model,
                        error,
                    )
                    failures.append(TargetFailure.from_error(target, error))
                    continue
                finally:
                    await close_quietly(upstream)
                breaker.record_success()
                yield self._finish(
                    session, request, target, finish, started_wall, started, ttft, fallback
                )
                return
            raise AllTargetsFailed(request.model, failures)
        except RoutingError:
            raise
        except Exception as exc:
            raise _internal_error(exc) from exc

    def _finish(
        self,
        session: _LoopSession,
        request: GenerationRequest,
        target: Target,
        finish: Finish,
        started_wall: float,
        started: float,
        ttft: float | None,
        fallback: bool,
    ) -> Finish:
        latency = time.perf_counter() - started
        ttft_ms: float | None
        if request.stream:
            ttft_ms = None if ttft is None else ttft * 1000
        elif finish.prompt_eval_duration_ns is not None:
            # Not streamed: the best figure is the upstream's own (load + prompt evaluation).
            ttft_ms = ((finish.load_duration_ns or 0) + finish.prompt_eval_duration_ns) / 1e6
        else:
            ttft_ms = None
        tokens = finish.completion_tokens
        tps: float | None = None
        if tokens:
            if finish.eval_duration_ns:
                tps = tokens * 1e9 / finish.eval_duration_ns
            else:
                gen_time = latency - (ttft or 0.0) if request.stream else latency
                tps = tokens / gen_time if gen_time > 0 else None
        # Why not dataclasses.replace: it costs twice this explicit copy, once per call.
        # Every field of Finish is named here (a test checks), so none is lost.
        done = Finish(
            finish_reason=finish.finish_reason,
            prompt_tokens=finish.prompt_tokens,
            completion_tokens=finish.completion_tokens,
            total_duration_ns=finish.total_duration_ns,
            load_duration_ns=finish.load_duration_ns,
            prompt_eval_duration_ns=finish.prompt_eval_duration_ns,
            eval_duration_ns=finish.eval_duration_ns,
            extra=finish.extra,
            model=request.model,
            backend_type=target.backend_type,
            endpoint_url=target.endpoint_url,
            upstream_model=target.upstream_model,
            entry_id=target.entry_id,
            fallback=fallback,
            latency_ms=latency * 1000,
            ttft_ms=ttft_ms,
            tokens_per_sec=tps,
        )
        self._sample(
            session, request, target, started_wall, started, ttft, done, fallback, None, 200
        )
        return done

    def _sample(
        self,
        session: _LoopSession,
        request: GenerationRequest,
        target: Target,
        started_wall: float,
        started: float,
        ttft: float | None,
        finish: Finish | None,
        fallback: bool,
        error_kind: str | None,
        status_code: int | None,
        *,
        overload: bool = False,
    ) -> None:
        if not session.metrics.enabled and self._on_sample is None:
            return
        sample = {
            "entry_id": target.entry_id,
            "model": request.model,
            "backend_type": target.backend_type,
            "endpoint_url": target.endpoint_url,
            "started_at": started_wall,  # formatted when batched, off the request path
            "ok": error_kind is None,
            "error_kind": error_kind,
            "status_code": status_code,
            "latency_ms": finish.latency_ms if finish else (time.perf_counter() - started) * 1000,
            "ttft_ms": finish.ttft_ms if finish else (None if ttft is None else ttft * 1000),
            # Ollama's load_duration (a model load before answering); the OpenAI protocol
            # reports none: null.
            "load_ms": None
            if finish is None or finish.load_duration_ns is None
            else finish.load_duration_ns / 1e6,
            "prompt_tokens": finish.prompt_tokens if finish else None,
            "completion_tokens": finish.completion_tokens if finish else None,
            "tokens_per_sec": finish.tokens_per_sec if finish else None,
            "fallback": fallback,
            "stream": request.stream,
            # At capacity (a 429, or a 503 with Retry-After): not the target's failure. For
            # on_sample observers (the gateway's metrics); not shipped to the admin.
            "overload": overload,
        }
        if self._on_sample is not None:
            try:
                self._on_sample(sample)
            except Exception:  # an observer's bug must never fail the call
                logger.exception("routing: the on_sample observer failed")
        session.metrics.record(sample)

    async def _collect(self, request: GenerationRequest) -> GenerateResult:
        parts: list[str] = []
        finish: Finish | None = None
        async for event in self.events(request):
            if type(event) is TextDelta:
                parts.append(event.text)
            elif type(event) is Finish:
                finish = event
        if finish is None:  # events() ends with a Finish or raises: this is a bug
            raise InternalError("the answer ended without its Finish event")
        return build_result(finish, "".join(parts))

    def _check_open(self) -> None:
        if self._closed:
            raise RouterClosed("this LLMRouter was closed")


class _LoopSession:
    """What a router holds per event loop: its HTTP client, backends and metrics shipping."""

    __slots__ = ("loop", "client", "metrics", "backends", "task", "closing", "_router")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: httpx.AsyncClient,
        metrics: SampleShipper,
        router: LLMRouter,
    ) -> None:
        self.loop = loop
        self.client = client
        self.metrics = metrics
        self.backends: dict[str, Backend] = {}
        self.task: asyncio.Task[None] | None = None
        self.closing = False
        self._router = router

    def backend(self, kind: str) -> Backend | None:
        backend = self.backends.get(kind)
        if backend is None:
            cls = backend_class(kind)
            if cls is None:
                return None
            router = self._router
            backend = self.backends[kind] = cls(
                self.client,
                connect_timeout=router._connect_timeout,
                max_answer_bytes=router._max_answer_bytes,
                max_line_bytes=router._max_line_bytes,
            )
        return backend


def _build(**arguments: Any) -> GenerationRequest:
    """Validate a call's arguments; whatever goes wrong reading them is an InvalidRequest."""
    try:
        return GenerationRequest.build(**arguments)
    except RoutingError:
        raise
    except Exception as exc:  # e.g. a Mapping or Sequence of the caller's that raises
        raise InvalidRequest(f"cannot read the arguments: {type(exc).__name__}: {exc}") from exc


def _internal_error(exc: Exception) -> InternalError:
    logger.error("routing: unexpected error", exc_info=exc)
    return InternalError(f"unexpected error in routing: {type(exc).__name__}: {str(exc)[:200]}")


def _targets_to_try(targets: tuple[Target, ...]) -> tuple[Target, ...]:
    """Leave out the targets marked down, unless all are (then try them all)."""
    if len(targets) < 2:
        return targets  # a lone target is tried whatever its health
    up = tuple(t for t in targets if t.health != "down")
    return up or targets


_router: LLMRouter | None = None
_router_lock = threading.Lock()


def get_llm_router() -> LLMRouter:
    """Return the process-wide router, configured from the environment.

    ``ADMIN_API_URL`` (default http://localhost:8080; empty for none), ``ATHENA_SERVICE_KEY``,
    ``ATHENA_ROUTES_FILE`` (when set and ADMIN_API_URL is not, no admin is used),
    ``ATHENA_DEFAULT_OLLAMA_URL`` (default http://localhost:11434), and those of
    ``router_options_from_environment`` (allowed networks, answer caps, proxies).

    Safe to call and use from any thread and any event loop: the router keeps one
    connection pool and one metrics task per loop (see LLMRouter).
    """
    global _router
    router = _router
    if router is not None and not router.closed:
        return router
    with _router_lock:
        if _router is None or _router.closed:
            env = os.environ
            routes_file = env.get("ATHENA_ROUTES_FILE") or None
            admin_url = env.get("ADMIN_API_URL")
            if admin_url is None:
                admin_url = None if routes_file else DEFAULT_ADMIN_URL
            _router = LLMRouter(
                admin_url or None,
                service_key=env.get("ATHENA_SERVICE_KEY") or None,
                routes_file=routes_file,
                default_ollama_url=env.get("ATHENA_DEFAULT_OLLAMA_URL") or DEFAULT_OLLAMA_URL,
                **router_options_from_environment(env),
            )
        return _router
