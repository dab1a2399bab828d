"""The gateway's Prometheus metrics: its requests, every upstream attempt, the router's cache.

Label sets stay bounded whatever clients send: ``model`` is the model's name only for models
the router has a route for (the registry's), at most ``max_models`` of them, and ``other``
beyond; ``entry`` is the registry entry's id (never the endpoint URL); ``endpoint`` is one of
the gateway's own paths; statuses are classes (``2xx``), never raw codes.

Upstream figures come from the router's per-attempt samples (``LLMRouter(on_sample=...)``),
the same ones it ships to the admin, so the gateway and the admin's charts agree.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from routing import LLMRouter

__all__ = [
    "ROUTER_FIGURES_INTERVAL",
    "BoundedLabels",
    "GatewayMetrics",
    "endpoint_label",
    "is_loopback",
    "status_class",
]

OTHER = "other"

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TPS_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

# The gateway's own paths (docs/gateway.md); anything else is counted as `other`.
_ENDPOINTS = frozenset(
    {
        "/",
        "/health",
        "/metrics",
        "/api/generate",
        "/api/chat",
        "/api/tags",
        "/api/ps",
        "/api/show",
        "/api/version",
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/models",
    }
)


def endpoint_label(path: str) -> str:
    if path in _ENDPOINTS:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{model}"
    return OTHER


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else OTHER


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BoundedLabels:
    """Map model names to label values: known models keep their name up to a cap."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._named: set[str] = set()
        self._lock = threading.Lock()

    def __contains__(self, model: str) -> bool:
        return model in self._named

    def __call__(self, model: str | None, known: bool) -> str:
        if not model:
            return OTHER
        if model in self._named:
            return model
        if not known:
            return OTHER
        with self._lock:
            if len(self._named) < self._cap:
                self._named.add(model)
                return model
        return OTHER


class _Children:
    """``metric.labels(*values)``, remembered per label values.

    Why: prometheus_client checks, converts and locks on every ``labels()`` call, and a
    request made up to eight of them. The label sets are bounded (see the module's
    docstring), so is this cache.
    """

    __slots__ = ("_metric", "_children")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


# The router's figures, the same names and help whichever path reports them (one process:
# _RouterCollector; several workers: _SharedRouterFigures).
_ROUTE_AGE = (
    "athena_router_route_age_seconds",
    "Seconds since the router fetched (or revalidated) a cached route from the admin.",
)
_ROUTES_CACHED = ("athena_router_routes_cached", "Routes in the router's cache.")
_ROUTE_AGE_MAX = (
    "athena_router_route_age_max_seconds",
    "Age of the oldest cached route (grows during an admin outage).",
)
_ADMIN_LOOKUPS = ("athena_router_admin_lookups", "Route look-ups the router sent to the admin.")
_SAMPLES_DROPPED = (
    "athena_router_samples_dropped",
    "Samples not delivered to the admin (buffer full or rejected).",
)
_SAMPLES_BUFFERED = ("athena_router_samples_buffered", "Samples waiting to be sent to the admin.")

# How often each worker copies its router's figures into the shared files (a few dict reads).
ROUTER_FIGURES_INTERVAL = 1.0


def _ages_by_label(ages: Mapping[str, float], labels: BoundedLabels) -> dict[str, float]:
    """Route ages by ``model`` label: capped models by name, the rest as the oldest of them."""
    by_label: dict[str, float] = {}
    other_age: float | None = None
    for model, seconds in sorted(ages.items()):
        label = labels(model, True)
        if label == OTHER:
            other_age = seconds if other_age is None else max(other_age, seconds)
        else:
            by_label[label] = seconds
    if other_age is not None:
        by_label[OTHER] = other_age
    return by_label


class _RouterCollector(Collector):
    """Read the router's cache and counters at scrape time."""

    def __init__(self, router: Callable[[], LLMRouter | None], labels: BoundedLabels) -> None:
        self._router = router
        self._labels = labels

    def collect(self) -> Iterator[Any]:
        router = self._router()
        if router is None:
            return
        ages = router.route_ages()
        age = GaugeMetricFamily(*_ROUTE_AGE, labels=["model"])
        for label, seconds in _ages_by_label(ages, self._labels).items():
            age.add_metric([label], seconds)
        yield age
        yield GaugeMetricFamily(*_ROUTES_CACHED, value=len(ages))
        yield GaugeMetricFamily(*_ROUTE_AGE_MAX, value=max(ages.values(), default=0.0))
        yield CounterMetricFamily(*_ADMIN_LOOKUPS, value=router.admin_lookups)
        yield CounterMetricFamily(*_SAMPLES_DROPPED, value=router.metrics_dropped)
        yield GaugeMetricFamily(*_SAMPLES_BUFFERED, value=router.metrics_buffered)


class _SharedRouterFigures:
    """The router's figures, copied into prometheus_client's multiprocess files.

    Why: with several workers a scrape reads only the files (MultiProcessCollector), and a
    collector would see only the answering worker's router. So each worker copies its
    router's figures every ``ROUTER_FIGURES_INTERVAL`` (the app's lifespan runs
    ``copy_every``) and the scrape combines them, metric by metric, as said below.
    """

    def __init__(
        self,
        router: Callable[[], LLMRouter | None],
        labels: BoundedLabels,
        registry: CollectorRegistry,
    ) -> None:
        self._router = router
        self._labels = labels
        # Gauges are `live*`: the parent's mark_process_dead removes a dead worker's live
        # files only, and its frozen figures would otherwise stay in the max or the sum.
        # livemax for ages: an age alert needs the worst worker (the one whose cache is the
        # stalest), and the oldest route anywhere is the oldest of the workers' oldest.
        self.route_age = Gauge(
            *_ROUTE_AGE, ["model"], multiprocess_mode="livemax", registry=registry
        )
        self.route_age_max = Gauge(*_ROUTE_AGE_MAX, multiprocess_mode="livemax", registry=registry)
        # livesum: each worker caches its own copy of a route and has its own sample buffer;
        # the sum is what the whole gateway holds (as admin look-ups sum, one per worker).
        self.routes_cached = Gauge(*_ROUTES_CACHED, multiprocess_mode="livesum", registry=registry)
        self.samples_buffered = Gauge(
            *_SAMPLES_BUFFERED, multiprocess_mode="livesum", registry=registry
        )
        # Counters sum over workers, dead ones included (a counter never goes back).
        self.admin_lookups = Counter(*_ADMIN_LOOKUPS, registry=registry)
        self.samples_dropped = Counter(*_SAMPLES_DROPPED, registry=registry)
        self._copied_lookups = 0
        self._copied_dropped = 0
        self._aged_labels: set[str] = set()

    def copy(self) -> None:
        """Copy the router's current figures; counters advance by the change since the last."""
        router = self._router()
        if router is None:
            return
        ages = router.route_ages()
        self._copy_ages(_ages_by_label(ages, self._labels))
        self.routes_cached.set(len(ages))
        self.route_age_max.set(max(ages.values(), default=0.0))
        self.samples_buffered.set(router.metrics_buffered)
        self._copied_lookups = _advance(
            self.admin_lookups, router.admin_lookups, self._copied_lookups
        )
        self._copied_dropped = _advance(
            self.samples_dropped, router.metrics_dropped, self._copied_dropped
        )

    def _copy_ages(self, by_label: dict[str, float]) -> None:
        # prometheus_client cannot remove a label in multiprocess mode: a model this worker
        # no longer has a route for reads 0 here: below any age another worker still holds.
        for label in self._aged_labels - by_label.keys():
            self.route_age.labels(label).set(0.0)
        for label, seconds in by_label.items():
            self.route_age.labels(label).set(seconds)
        self._aged_labels = set(by_label)

    async def copy_every(self, seconds: float) -> None:
        """Copy until cancelled (the app's lifespan starts and stops it)."""
        while True:
            try:
                self.copy()
            except Exception:
                # A failed copy must not end the loop: the figures would freeze unnoticed.
                logger.warning("gateway: copying the router's metrics failed", exc_info=True)
            await asyncio.sleep(seconds)


def _advance(counter: Counter, total: int, copied: int) -> int:
    """Advance counter by what total gained since copied was read; return the new copy."""
    counter.inc(total - copied if total >= copied else total)  # below: a new router, from 0
    return total


class GatewayMetrics:
    """One gateway's metrics in its own registry (two gateways in a process never mix)."""

    def __init__(
        self,
        router: Callable[[], LLMRouter | None],
        *,
        max_models: int = 100,
        multiprocess_dir: str | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Several workers (athena_admin.gateway.workers): scrape the sum of their files, not
        # this process's registry, whichever worker answers.
        self._scrape_registry = self.registry
        if multiprocess_dir is not None:
            self._scrape_registry = CollectorRegistry()
            MultiProcessCollector(self._scrape_registry, path=multiprocess_dir)
        self._router = router
        self.models = BoundedLabels(max_models)
        r = self.registry
        self.requests = Counter(
            "athena_gateway_requests",
            "Requests answered by the gateway.",
            ["protocol", "endpoint", "model", "status_class"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "athena_gateway_request_duration_seconds",
            "Time from a request's arrival to the end of its answer (the whole stream).",
            ["protocol", "endpoint"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.attempts = Counter(
            "athena_upstream_requests",
            "Calls to an upstream target (each fallback attempt counts).",
            ["model", "backend_type", "entry"],
            registry=r,
        )
        self.errors = Counter(
            "athena_upstream_errors",
            "Failed upstream calls, by error kind (connect, timeout, http_4xx, http_5xx, "
            "protocol, cancelled).",
            ["model", "backend_type", "entry", "error_kind"],
            registry=r,
        )
        self.overloads = Counter(
            "athena_upstream_overloads",
            "Upstream calls refused for being at capacity (429, or 503 with Retry-After); "
            "not counted as errors.",
            ["model", "backend_type", "entry"],
            registry=r,
        )
        self.fallbacks = Counter(
            "athena_fallbacks",
            "Answers served by a target other than the first of the model's chain.",
            ["model", "backend_type", "entry"],
            registry=r,
        )
        self.latency = Histogram(
            "athena_upstream_latency_seconds",
            "Latency of successful upstream calls, to the last byte.",
            ["model", "backend_type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "athena_upstream_ttft_seconds",
            "Time to first token of successful upstream calls.",
            ["model", "backend_type"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tokens_per_second = Histogram(
            "athena_upstream_tokens_per_second",
            "Generation speed of successful upstream calls.",
            ["model", "backend_type"],
            buckets=TPS_BUCKETS,
            registry=r,
        )
        self.completion_tokens = Counter(
            "athena_upstream_completion_tokens",
            "Tokens generated by upstreams.",
            ["model", "backend_type"],
            registry=r,
        )
        # The router's state is per process. One process: read it at scrape time. Several
        # workers: each copies its own into the shared files (docs/observability.md).
        self.router_figures: _SharedRouterFigures | None = None
        if multiprocess_dir is None:
            r.register(_RouterCollector(router, self.models))
        else:
            self.router_figures = _SharedRouterFigures(router, self.models, r)
        self._requests = _Children(self.requests)
        self._request_seconds = _Children(self.request_seconds)
        self._attempts = _Children(self.attempts)
        self._errors = _Children(self.errors)
        self._overloads = _Children(self.overloads)
        self._fallbacks = _Children(self.fallbacks)
        self._latency = _Children(self.latency)
        self._ttft = _Children(self.ttft)
        self._tokens_per_second = _Children(self.tokens_per_second)
        self._completion_tokens = _Children(self.completion_tokens)

    def model_label(self, model: str | None) -> str:
        if not model:
            return OTHER
        if model in self.models:
            return model  # named already: no need to ask the router
        router = self._router()
        return self.models(model, router is not None and router.has_route(model))

    def observe_request(
        self, *, protocol: str, path: str, model: str | None, status: int, seconds: float
    ) -> None:
        endpoint = endpoint_label(path)
        label = self.model_label(model) if model else "none"
        self._requests(protocol, endpoint, label, status_class(status)).inc()
        self._request_seconds(protocol, endpoint).observe(seconds)

    def observe_sample(self, sample: Mapping[str, Any]) -> None:
        """Record one upstream attempt (the router's ``on_sample`` hook)."""
        model = self.model_label(sample.get("model"))
        backend = str(sample.get("backend_type") or OTHER)
        entry_id = sample.get("entry_id")
        entry = "none" if entry_id is None else str(entry_id)
        self._attempts(model, backend, entry).inc()
        if sample.get("overload"):
            self._overloads(model, backend, entry).inc()  # at capacity, not broken
            return
        if not sample.get("ok"):
            kind = str(sample.get("error_kind") or "protocol")
            self._errors(model, backend, entry, kind).inc()
            return
        if sample.get("fallback"):
            self._fallbacks(model, backend, entry).inc()
        latency = sample.get("latency_ms")
        if latency is not None:
            self._latency(model, backend).observe(latency / 1000)
        ttft = sample.get("ttft_ms")
        if ttft is not None:
            self._ttft(model, backend).observe(ttft / 1000)
        tps = sample.get("tokens_per_sec")
        if tps is not None:
            self._tokens_per_second(model, backend).observe(tps)
        tokens = sample.get("completion_tokens")
        if tokens:
            self._completion_tokens(model, backend).inc(tokens)

    def render(self) -> bytes:
        return generate_latest(self._scrape_registry)
