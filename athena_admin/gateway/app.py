"""The gateway's ASGI app: one router per process, auth in front, Ollama and OpenAI routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from athena_admin.gateway import ollama, openai
from athena_admin.gateway.answer import overhead_headers
from athena_admin.gateway.auth import Authenticator, ChecksOverloaded
from athena_admin.gateway.catalog import ModelCatalog
from athena_admin.gateway.config import GatewayConfig
from athena_admin.gateway.errors import GatewayError, from_routing_error
from athena_admin.gateway.metrics import ROUTER_FIGURES_INTERVAL, GatewayMetrics, is_loopback
from athena_admin.gateway.wire import ClientDisconnected, read_object
from routing import LLMRouter, ModelNotConfigured, RoutingError
from routing.logs import clean_request_id, new_request_id, reset_request_id, set_request_id

__all__ = ["Gateway", "GatewayApp", "create_app"]

# Paths any client may call: liveness probes written for Ollama call these unauthenticated.
_OPEN_PATHS = frozenset({"/", "/api/version", "/health"})

logger = logging.getLogger(__name__)
# One line per request at INFO, with its request id (and status, duration, model as fields).
_access_log = logging.getLogger("athena_admin.gateway.access")
_QUIET_PATHS = frozenset({"/health", "/metrics"})  # polled: counted, not logged


class Gateway:
    """The process's shared state: configuration, router, authenticator, model catalog."""

    def __init__(self, config: GatewayConfig, router: LLMRouter | None = None) -> None:
        self.config = config
        self._router = router
        self._owns_router = router is None
        self._copying_router_figures: asyncio.Task[None] | None = None
        self.auth = Authenticator(config)
        self.catalog = ModelCatalog(lambda: self.router, ttl=config.models_cache_seconds)
        self.metrics = GatewayMetrics(
            lambda: self._router,
            max_models=config.metrics_max_models,
            multiprocess_dir=config.metrics_multiprocess_dir,
        )

    @property
    def router(self) -> LLMRouter:
        if self._router is None:
            raise RuntimeError("the gateway's router is made at startup (ASGI lifespan)")
        return self._router

    async def start(self) -> None:
        if self._router is None:
            c = self.config
            options = dict(c.router_options)
            options.setdefault("on_sample", self.metrics.observe_sample)
            self._router = LLMRouter(
                c.admin_url,
                service_key=c.service_key,
                routes_file=c.routes_file,
                default_ollama_url=c.default_ollama_url,
                # An unknown model is the client's 404, never a guess at the default Ollama.
                use_default_route=False,
                **options,
            )
        figures = self.metrics.router_figures
        if figures is not None:  # several workers: each publishes its router's figures
            self._copying_router_figures = asyncio.create_task(
                figures.copy_every(ROUTER_FIGURES_INTERVAL)
            )

    async def stop(self) -> None:
        copying, self._copying_router_figures = self._copying_router_figures, None
        if copying is not None:
            copying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await copying
        if self._router is not None and self._owns_router:
            await self._router.aclose()
        if copying is not None and self.metrics.router_figures is not None:
            # After aclose: its last flush may have dropped samples, and counters keep them.
            self.metrics.router_figures.copy()

    async def translate(self, exc: RoutingError, field_names: dict[str, str]) -> GatewayError:
        """Turn a routing exception into the error the client sees."""
        available = (
            await self.catalog.names_or_none() if isinstance(exc, ModelNotConfigured) else None
        )
        return from_routing_error(exc, field_names=field_names, available=available)


def _protocol(path: str) -> Any:
    return openai if path.startswith("/v1/") or path == "/v1" else ollama


# The hot paths, served from raw ASGI (GatewayApp._generate) rather than through Starlette's
# middleware, routing and Request objects, which cost more than the gateway's own parsing.
_GenerationHandler = Callable[["Gateway", dict[str, Any]], Awaitable[ASGIApp]]
_GENERATION_ROUTES: dict[str, _GenerationHandler] = {
    **ollama.GENERATION_ROUTES,
    **openai.GENERATION_ROUTES,
}


def _credentials(scope: Scope) -> tuple[str | None, str | None]:
    api_key = authorization = None
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            api_key = value.decode("latin-1")
        elif name == b"authorization":
            authorization = value.decode("latin-1")
    return api_key, authorization


class GatewayApp:
    """The outer ASGI layer: timing, authentication, and the two headers on every response."""

    def __init__(self, app: Starlette, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # A request id follows the request: the client's X-Request-ID if it is safe, else a
        # new one; in every log line (routing.logs), sent upstream, and returned to the client.
        rid = _incoming_request_id(scope) or new_request_id()
        rid_header = (b"x-request-id", rid.encode())
        token = set_request_id(rid)
        status = 500

        async def send_tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            await self._serve(scope, receive, send_tracked, started)
        finally:
            seconds = time.perf_counter() - started
            path: str = scope["path"]
            model = scope.get("athena.model")
            self.gateway.metrics.observe_request(
                protocol=_protocol(path).PROTOCOL,
                path=path,
                model=model,
                status=status,
                seconds=seconds,
            )
            if _access_log.isEnabledFor(logging.INFO) and path not in _QUIET_PATHS:
                _access_log.info(
                    "%s %s %d",
                    scope["method"],
                    path,
                    status,
                    extra={
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                        "model": model,
                    },
                )
            reset_request_id(token)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        scope["athena.started"] = started
        scope["athena.send"] = send
        path: str = scope["path"]
        if path == "/metrics":
            await self._metrics(scope, send, started)
            return
        if path not in _OPEN_PATHS:
            api_key, authorization = _credentials(scope)
            client = scope.get("client")
            try:
                principal = await self.gateway.auth.authenticate(
                    api_key, authorization, client[0] if client else None
                )
            except ChecksOverloaded:
                error = GatewayError(
                    429,
                    "too many credential checks from this address; try again in a second",
                    code="rate_limit_exceeded",
                )
                await _send_error(send, _protocol(path), error, started, retry_after=1)
                return
            except Exception:
                # The bearer hook could not check the token (its provider is down): 503,
                # not 401, so clients retry instead of dropping their credentials.
                logger.warning("gateway: bearer token check failed", exc_info=True)
                error = GatewayError(
                    503,
                    "the identity provider is unavailable; try again later",
                    code="identity_provider_unavailable",
                    kind="server_error",
                )
                await _send_error(send, _protocol(path), error, started)
                return
            if principal is None:
                error = GatewayError(
                    401,
                    "unauthorized: send a service key as 'Authorization: Bearer athk_...' "
                    "or 'X-API-Key: athk_...'",
                    code="invalid_api_key",
                    kind="invalid_request_error",
                )
                await _send_error(send, _protocol(path), error, started, www_authenticate=True)
                return
            if not principal.may_use_models:
                # A valid key or token of a user without backends.use_llmbackend: every
                # model route, listings included, is refused (docs/gateway.md).
                error = GatewayError(
                    403,
                    "forbidden: this account may not use models "
                    "(it needs the backends.use_llmbackend permission)",
                    code="permission_denied",
                )
                await _send_error(send, _protocol(path), error, started)
                return
            scope["athena.principal"] = principal

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and not scope.get("athena.answered"):
                # An answer the gateway made itself; an error names no backend.
                backend = "gateway" if message["status"] < 400 else "none"
                message["headers"] = [
                    *message.get("headers", ()),
                    *overhead_headers(backend, time.perf_counter() - started),
                ]
            await send(message)

        handler = _GENERATION_ROUTES.get(path)
        if handler is not None:
            await self._generate(handler, scope, receive, send, send_with_headers, started)
        else:
            await self.app(scope, receive, send_with_headers)

    async def _generate(
        self,
        handler: _GenerationHandler,
        scope: Scope,
        receive: Receive,
        send: Send,
        send_with_headers: Send,
        started: float,
    ) -> None:
        """Serve a generation route: parse, validate, then run the answer it builds."""
        try:
            if scope["method"] != "POST":
                raise GatewayError(405, f"method not allowed: {scope['method']} {scope['path']}")
            answer = await handler(self.gateway, await read_object(scope, receive))
        except GatewayError as error:
            await _send_error(send, _protocol(scope["path"]), error, started)
            return
        except ClientDisconnected:
            return  # nobody to answer
        # A RoutedAnswer sends its own headers; a load answer (ollama._load) gets the wrapper's.
        await answer(scope, receive, send_with_headers)

    async def _metrics(self, scope: Scope, send: Send, started: float) -> None:
        """GET /metrics: loopback clients, service keys, or anyone when metrics are public."""
        client = scope.get("client")
        allowed = self.gateway.config.metrics_public or is_loopback(client[0] if client else None)
        if not allowed:
            api_key, authorization = _credentials(scope)
            try:
                principal = await self.gateway.auth.authenticate(api_key, authorization, None)
            except Exception:
                principal = None
            allowed = principal is not None and principal.kind == "service_key"
        if not allowed:
            error = GatewayError(
                401,
                "unauthorized: metrics are served to loopback clients and service keys",
                code="invalid_api_key",
                kind="invalid_request_error",
            )
            await _send_error(send, ollama, error, started, www_authenticate=True)
            return
        body = self.gateway.metrics.render()
        headers = [
            (b"content-type", CONTENT_TYPE_LATEST.encode()),
            (b"content-length", str(len(body)).encode()),
            *overhead_headers("gateway", time.perf_counter() - started),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return clean_request_id(value.decode("latin-1"))
    return None


async def _send_error(
    send: Send,
    protocol: Any,
    error: GatewayError,
    started: float,
    *,
    www_authenticate: bool = False,
    retry_after: int | None = None,
) -> None:
    body = protocol.error_body(error)
    headers = [
        (b"content-type", protocol.JSON_MEDIA_TYPE),
        (b"content-length", str(len(body)).encode()),
        *overhead_headers("none", time.perf_counter() - started),
    ]
    if www_authenticate:
        headers.append((b"www-authenticate", b'Bearer realm="athena"'))
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    protocol = _protocol(request.url.path)
    message = "not found" if exc.status_code == 404 else str(exc.detail).lower()
    error = GatewayError(exc.status_code, f"{message}: {request.method} {request.url.path}")
    return Response(
        protocol.error_body(error), exc.status_code, media_type=protocol.JSON_MEDIA_TYPE.decode()
    )


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    protocol = _protocol(request.url.path)
    return Response(
        protocol.error_body(exc), exc.status, media_type=protocol.JSON_MEDIA_TYPE.decode()
    )


def create_app(
    config: GatewayConfig | None = None, *, router: LLMRouter | None = None
) -> GatewayApp:
    """Build the gateway; without a config, read Django's settings (django.setup() first)."""
    gateway = Gateway(config if config is not None else GatewayConfig.from_settings(), router)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    starlette = Starlette(
        routes=[*ollama.routes(), *openai.routes(), Route("/health", _health, methods=["GET"])],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, GatewayError: _gateway_error},
    )
    starlette.state.gateway = gateway
    return GatewayApp(starlette, gateway)
