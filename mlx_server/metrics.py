"""Prometheus metrics and the per-request log line: queue depth and batch size from the engines.

Engine figures are read from each loaded model's engine when Prometheus scrapes (a custom
collector on the event loop thread), so the decode thread never touches a metric. A model's
counters start again from zero when it is reloaded (Prometheus reads that as a reset).
Request counts and durations are counted here, labelled by the server's own paths.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from routing.logs import clean_request_id, new_request_id, reset_request_id, set_request_id

from .provider import ModelProvider
from .settings import ServerSettings

__all__ = ["RequestLog", "ServerMetrics"]

access_log = logging.getLogger("mlx_server.access")

_ENDPOINTS = frozenset(
    {
        "/",
        "/health",
        "/metrics",
        "/v1/models",
        "/v1/completions",
        "/v1/chat/completions",
        "/api/generate",
        "/api/chat",
        "/api/tags",
        "/api/ps",
        "/api/show",
        "/api/version",
    }
)
_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def endpoint_label(path: str) -> str:
    if path in _ENDPOINTS:
        return path
    return "/v1/models/{model}" if path.startswith("/v1/models/") else "other"


class _EngineCollector(Collector):
    def __init__(self, provider: ModelProvider, settings: ServerSettings) -> None:
        self._provider = provider
        self._settings = settings

    def collect(self) -> Iterator[Any]:
        loaded = self._provider.loaded()
        gauges = {
            "queue_depth": GaugeMetricFamily(
                "mlx_queue_depth",
                "Requests admitted and waiting for their first token, per model.",
                labels=["model"],
            ),
            "active": GaugeMetricFamily(
                "mlx_active_requests", "Requests in flight, per model.", labels=["model"]
            ),
            "batch": GaugeMetricFamily(
                "mlx_batch_size", "Sequences in the running decode batch.", labels=["model"]
            ),
            "cache_entries": GaugeMetricFamily(
                "mlx_prompt_cache_entries", "KV caches held for prefix reuse.", labels=["model"]
            ),
        }
        counters = {
            "tokens": CounterMetricFamily(
                "mlx_tokens_generated", "Tokens sampled, per model.", labels=["model"]
            ),
            "completed": CounterMetricFamily(
                "mlx_sequences_completed", "Sequences that finished.", labels=["model"]
            ),
            "cancelled": CounterMetricFamily(
                "mlx_sequences_cancelled",
                "Sequences removed before the end (client gone, stop sequence).",
                labels=["model"],
            ),
            "steps": CounterMetricFamily(
                "mlx_decode_steps", "Batched decode steps run.", labels=["model"]
            ),
            "sequences": CounterMetricFamily(
                "mlx_batch_sequences",
                "Sequences summed over decode steps (divided by steps: the mean batch size).",
                labels=["model"],
            ),
            "to_batch": CounterMetricFamily(
                "mlx_moves_to_batch",
                "Requests decoding alone moved into the batch when another request arrived.",
                labels=["model"],
            ),
            "to_solo": CounterMetricFamily(
                "mlx_moves_to_solo",
                "Requests moved out of the batch to decode alone once the others had left.",
                labels=["model"],
            ),
            "cache_hits": CounterMetricFamily(
                "mlx_prompt_cache_hits",
                "Requests that reused a cached prompt prefix instead of prefilling it.",
                labels=["model"],
            ),
            "cache_tokens": CounterMetricFamily(
                "mlx_prompt_cache_reused_tokens",
                "Prompt tokens taken from the prompt cache instead of prefilled.",
                labels=["model"],
            ),
        }
        for m in loaded:
            engine, stats, name = m.engine, m.engine.stats, [m.name]
            gauges["queue_depth"].add_metric(name, engine.waiting)
            gauges["active"].add_metric(name, engine.active)
            gauges["batch"].add_metric(name, stats.batch_size)
            gauges["cache_entries"].add_metric(name, len(engine.prompt_cache))
            counters["tokens"].add_metric(name, stats.tokens_generated)
            counters["completed"].add_metric(name, stats.completed)
            counters["cancelled"].add_metric(name, stats.cancelled)
            counters["steps"].add_metric(name, stats.steps)
            counters["sequences"].add_metric(name, stats.batch_sequences)
            counters["to_batch"].add_metric(name, stats.moved_to_batch)
            counters["to_solo"].add_metric(name, stats.moved_to_solo)
            counters["cache_hits"].add_metric(name, engine.prompt_cache.hits)
            counters["cache_tokens"].add_metric(name, engine.prompt_cache.reused_tokens)
        yield from gauges.values()
        yield from counters.values()
        yield GaugeMetricFamily("mlx_models_loaded", "Models in memory.", value=len(loaded))
        yield GaugeMetricFamily(
            "mlx_max_batch_size", "Configured batch size.", value=self._settings.max_batch_size
        )
        yield GaugeMetricFamily(
            "mlx_max_queue", "Configured queue per model.", value=self._settings.max_queue
        )


class ServerMetrics:
    """The server's metrics registry (one per app) and its GET /metrics endpoint."""

    def __init__(self, provider: ModelProvider, settings: ServerSettings) -> None:
        self.public = settings.metrics_public
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mlx_requests",
            "HTTP requests answered.",
            ["endpoint", "status_class"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "mlx_request_duration_seconds",
            "Time from a request's arrival to the end of its answer.",
            ["endpoint"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(provider, settings))

    def observe(self, path: str, status: int, seconds: float) -> None:
        endpoint = endpoint_label(path)
        self.requests.labels(endpoint, f"{status // 100}xx").inc()
        self.seconds.labels(endpoint).observe(seconds)

    async def endpoint(self, request: Request) -> Response:
        """GET /metrics: Prometheus text format, for loopback clients unless made public."""
        host = request.client.host if request.client else ""
        if not (self.public or _is_loopback(host)):
            return PlainTextResponse(
                "metrics are served to loopback clients (set ATHENA_METRICS_PUBLIC=true)\n",
                status_code=403,
            )
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RequestLog:
    """ASGI middleware: the request id (X-Request-ID in and out), one log line, the counts."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = clean_request_id(value.decode("latin-1"))
        # The router forwards its caller's id, so the gateway's line and this one match.
        rid = incoming or new_request_id()
        token = set_request_id(rid)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            path = scope["path"]
            self.metrics.observe(path, status, seconds)
            if access_log.isEnabledFor(logging.INFO) and path not in ("/health", "/metrics"):
                access_log.info(
                    "%s %s %d",
                    scope["method"],
                    path,
                    status,
                    extra={"status": status, "duration_ms": round(seconds * 1000, 3)},
                )
            reset_request_id(token)
