"""Build the Starlette app: routes of both protocols, /health, errors, lifespan."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator

import mlx.core as mx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .errors import APIError, InvalidRequest
from .metrics import RequestLog, ServerMetrics
from .ollama_routes import OllamaRoutes
from .openai_routes import OpenAIRoutes
from .provider import ModelProvider
from .settings import ServerSettings
from .wire import ollama_error, openai_error

logger = logging.getLogger("mlx_server")


def _device() -> str:
    """Name the MLX device kind the way /health reports it."""
    return "gpu" if mx.default_device().type == mx.gpu else "cpu"


def create_app(settings: ServerSettings) -> Starlette:
    """Create the ASGI app for these settings."""
    provider = ModelProvider(settings)
    metrics = ServerMetrics(provider, settings)
    started = time.time()

    async def health(request: Request) -> Response:
        # Reads only counters kept on the loop thread: it must answer in well under
        # 50 ms however busy the engines are.
        loaded = provider.loaded()
        return JSONResponse(
            {
                "status": "ok",
                "backend": "mlx",
                "device": _device(),
                "models_loaded": [m.name for m in loaded],
                "models_available": provider.catalog.names(),
                "queue_depth": sum(m.engine.waiting for m in loaded),
                "active_requests": sum(m.engine.active for m in loaded),
                "tokens_generated": sum(m.engine.stats.tokens_generated for m in loaded),
                "requests_cancelled": sum(m.engine.stats.cancelled for m in loaded),
                "max_batch_size": settings.max_batch_size,
                "max_queue": settings.max_queue,
                "uptime_s": round(time.time() - started, 3),
            }
        )

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        if exc.status >= 500 and exc.status != 503:
            logger.error("%s %s failed: %s", request.method, request.url.path, exc.message)
        if request.url.path.startswith("/api/"):
            return ollama_error(exc)
        return openai_error(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        # Unknown paths and wrong methods, in the caller's protocol shape.
        assert isinstance(exc, HTTPException)
        error = InvalidRequest(str(exc.detail))
        error.status = exc.status_code
        return await api_error(request, error)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        provider.start()
        logger.info("serving models: %s", ", ".join(provider.catalog.names()) or "(none)")
        try:
            yield
        finally:
            await provider.close()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
        *OpenAIRoutes(provider).routes(),
        *OllamaRoutes(provider).routes(),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={APIError: api_error, HTTPException: http_error},
        lifespan=lifespan,
        middleware=[Middleware(RequestLog, metrics=metrics)],
    )
    app.state.provider = provider
    return app
