"""The gateway's ASGI app: one router per process, auth in front, Ollama and OpenAI routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from athena_admin.gateway import ollama, openai
from athena_admin.gateway.answer import error_message, overhead_headers
from athena_admin.gateway.auth import Authenticator, ChecksOverloaded, Principal
from athena_admin.gateway.catalog import ModelCatalog
from athena_admin.gateway.config import GatewayConfig
from athena_admin.gateway.errors import (
    LOOP_DETECTED,
    GatewayError,
    from_routing_error,
    internal_error,
)
from athena_admin.gateway.metrics import ROUTER_FIGURES_INTERVAL, GatewayMetrics, is_loopback
from athena_admin.gateway.wire import ClientDisconnected
from routing import LLMRouter, ModelNotConfigured, RoutingError
from routing.logs import (
    clean_request_id,
    new_request_id,
    reset_hops,
    reset_request_id,
    set_hops,
    set_request_id,
)

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

    async def translate(
        self,
        exc: RoutingError,
        field_names: dict[str, str],
        *,
        operator: bool,
        model: str = "",
    ) -> GatewayError:
        """Turn a routing exception into the error the client sees."""
        available = (
            await self.catalog.names_or_none() if isinstance(exc, ModelNotConfigured) else None
        )
        return from_routing_error(
            exc, field_names=field_names, available=available, operator=operator, model=model
        )


def _protocol(path: str) -> ModuleType:
    return openai if path.startswith("/v1/") or path == "/v1" else ollama


def _credentials(scope: Scope) -> tuple[str | None, str | None]:
    api_key = authorization = None
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            api_key = value.decode("latin-1")
        elif name == b"authorization":
            authorization = value.decode("latin-1")
    return api_key, authorization


def _hops(scope: Scope) -> int:
    """Gateways the request passed through before this one (X-Athena-Hops; junk counts 0)."""
    for name, value in scope["headers"]:
        if name == b"x-athena-hops":
            return int(value) if value.isdigit() and len(value) < 4 else 0
    return 0


def _has_overhead_headers(headers: Any) -> bool:
    return any(name == b"x-athena-backend" for name, _ in headers)


class GatewayApp:
    """The outer ASGI layer: timing, authentication, the headers on every response, and the
    last word: whatever is raised below, the client gets an answer in its protocol."""

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
        hops = _hops(scope)
        token = set_request_id(rid)
        hops_token = set_hops(hops)  # the router sends hops + 1 upstream
        # Per-request values for the routes, in Starlette's request state (request.state).
        state = scope.setdefault("state", {})
        state["started"] = started
        status: int | None = None
        path: str = scope["path"]
        protocol = _protocol(path)

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), rid_header]
                if not _has_overhead_headers(headers):
                    # An answer the gateway made itself; an error names no backend.
                    backend = "gateway" if status < 400 else "none"
                    headers.extend(overhead_headers(backend, time.perf_counter() - started))
                message["headers"] = headers
            await send(message)

        try:
            await self._serve(scope, receive, send_with_headers, hops)
        except Exception:
            logger.exception("gateway: unhandled error serving %s %s", scope["method"], path)
            if status is None:
                await _send_error(send_with_headers, protocol, internal_error())
            # Else the answer was under way: the server ends the connection, which the
            # client reads as a cut answer. (Routed answers never get here: answer.py.)
        finally:
            seconds = time.perf_counter() - started
            model = state.get("model")
            final_status = 500 if status is None else status
            self.gateway.metrics.observe_request(
                protocol=protocol.PROTOCOL,
                path=path,
                model=model,
                status=final_status,
                seconds=seconds,
            )
            if _access_log.isEnabledFor(logging.INFO) and path not in _QUIET_PATHS:
                _access_log.info(
                    "%s %s %d",
                    scope["method"],
                    path,
                    final_status,
                    extra={
                        "status": final_status,
                        "duration_ms": round(seconds * 1000, 3),
                        "model": model,
                    },
                )
            reset_hops(hops_token)
            reset_request_id(token)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, hops: int) -> None:
        path: str = scope["path"]
        if path == "/metrics":
            await self._metrics(scope, send)
            return
        if path not in _OPEN_PATHS:
            principal = await self._authenticate(scope, send)
            if principal is None:
                return  # answered
            scope["state"]["principal"] = principal
            if hops >= MAX_HOPS:
                # This gateway is (through its registry) its own upstream, or a chain of
                # gateways is longer than any sane setup: stop here (RFC 5842 508).
                error = GatewayError(
                    LOOP_DETECTED,
                    f"loop detected: the request passed {hops} Athena gateways "
                    f"(X-Athena-Hops); an entry's endpoint points back at a gateway",
                    code="loop_detected",
                )
                await _send_error(send, _protocol(path), error)
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
                await _send_error(send, _protocol(path), error)
                return
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope, send: Send) -> Principal | None:
        """Return who the request is from, or answer 401, 429 or 503 and return None."""
        protocol = _protocol(scope["path"])
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
                retry_after=1,
            )
            await _send_error(send, protocol, error)
            return None
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
            await _send_error(send, protocol, error)
            return None
        if principal is None:
            error = GatewayError(
                401,
                "unauthorized: send a service key as 'Authorization: Bearer athk_...' "
                "or 'X-API-Key: athk_...'",
                code="invalid_api_key",
                kind="invalid_request_error",
            )
            await _send_error(send, protocol, error, www_authenticate=True)
            return None
        return principal

    async def _metrics(self, scope: Scope, send: Send) -> None:
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
            await _send_error(send, ollama, error, www_authenticate=True)
            return
        body = self.gateway.metrics.render()
        headers = [
            (b"content-type", CONTENT_TYPE_LATEST.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# At most this many gateways in a row; a request that has passed as many is refused (508).
MAX_HOPS = 4


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return clean_request_id(value.decode("latin-1"))
    return None


async def _send_error(
    send: Send,
    protocol: ModuleType,
    error: GatewayError,
    *,
    www_authenticate: bool = False,
) -> None:
    status, headers, body = error_message(protocol, error)
    if www_authenticate:
        headers.append((b"www-authenticate", b'Bearer realm="athena"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error_response(request: Request, error: GatewayError) -> Response:
    status, headers, body = error_message(_protocol(request.url.path), error)
    response = Response(body, status)
    response.raw_headers = headers  # content type and length included
    return response


async def _health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "not found" if exc.status_code == 404 else str(exc.detail).lower()
    error = GatewayError(exc.status_code, f"{message}: {request.method} {request.url.path}")
    return _error_response(request, error)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return _error_response(request, exc)


async def _client_disconnected(request: Request, exc: Exception) -> Response:
    # Nobody to answer; 499 (nginx's "client closed request") is only for the metrics.
    return Response(b"", 499)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # Starlette's ServerErrorMiddleware sends this, then re-raises: GatewayApp logs it.
    return _error_response(request, internal_error())


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

    # Every route, the four generation routes included, is a plain Starlette route: serving
    # those four from raw ASGI saved ~20 us of ~500 (about 4% of a request's CPU,
    # bench/gateway_cpu.py), under the 5% that would pay for a second request path.
    starlette = Starlette(
        routes=[*ollama.routes(), *openai.routes(), Route("/health", _health, methods=["GET"])],
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_error,
            GatewayError: _gateway_error,
            ClientDisconnected: _client_disconnected,
            Exception: _internal_error,
        },
    )
    starlette.state.gateway = gateway
    return GatewayApp(starlette, gateway)
