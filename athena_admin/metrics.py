"""GET /metrics on the admin: each registry entry's health and probes, read at scrape time.

The figures come from the database when Prometheus scrapes (a custom collector), not from
counters in this process: the admin runs as several workers and the probes run in Celery,
so only the database holds the whole picture. Two queries per scrape, whatever the load.

Served to loopback clients, to requests with a service key, or to anyone when
``ATHENA_METRICS_PUBLIC`` is true.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from athena_admin import counters
from backends.models import Health
from backends.selectors import entries_for_metrics, probe_counts_since
from backends.services import looks_like_service_key, service_key_authenticate

__all__ = ["RegistryCollector", "metrics"]

_LABELS = ["entry_id", "model", "backend_type"]
_STATES = [str(value) for value in Health.values]
PROBE_WINDOW = timedelta(hours=1)


class RegistryCollector(Collector):
    """Export every enabled entry's health state, last probe and recorded request totals."""

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily(
            "athena_admin_database_up", "Whether the admin could read the registry."
        )
        try:
            entries = list(entries_for_metrics())
            probes = probe_counts_since(timezone.now() - PROBE_WINDOW)
        except DatabaseError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        health = GaugeMetricFamily(
            "athena_backend_health",
            "1 for the entry's current health state (unknown, healthy, degraded, down), else 0.",
            labels=[*_LABELS, "state"],
        )
        last_ok = GaugeMetricFamily(
            "athena_backend_last_probe_ok", "1 if the entry's last probe succeeded.", labels=_LABELS
        )
        last_at = GaugeMetricFamily(
            "athena_backend_last_probe_timestamp_seconds",
            "When the entry was last probed (Unix time).",
            labels=_LABELS,
        )
        latency = GaugeMetricFamily(
            "athena_backend_probe_latency_seconds",
            "Latency of the entry's last successful probe.",
            labels=_LABELS,
        )
        failures = GaugeMetricFamily(
            "athena_backend_probe_consecutive_failures",
            "Probes failed in a row (down after ATHENA_PROBE_FAILURES_TO_DOWN).",
            labels=_LABELS,
        )
        recent = GaugeMetricFamily(
            "athena_backend_probes_last_hour",
            "Probes of the entry in the last hour, by result (ok, error).",
            labels=[*_LABELS, "result"],
        )
        requests = CounterMetricFamily(
            "athena_backend_requests",
            "Requests routers reported for the entry (POST /api/metrics/samples).",
            labels=_LABELS,
        )
        errors = CounterMetricFamily(
            "athena_backend_errors", "Failed requests routers reported.", labels=_LABELS
        )
        avg_latency = GaugeMetricFamily(
            "athena_backend_avg_latency_seconds",
            "Mean latency of the entry's successful requests.",
            labels=_LABELS,
        )
        avg_tps = GaugeMetricFamily(
            "athena_backend_avg_tokens_per_second",
            "Mean generation speed of the entry's successful requests.",
            labels=_LABELS,
        )
        for e in entries:
            labels = [str(e.pk), e.model_name, e.backend_type]
            for state in _STATES:
                health.add_metric([*labels, state], 1.0 if e.health == state else 0.0)
            if e.health_checked_at is not None:
                last_at.add_metric(labels, e.health_checked_at.timestamp())
                last_ok.add_metric(labels, 1.0 if e.probe_failures == 0 else 0.0)
            if e.probe_latency_ms is not None:
                latency.add_metric(labels, e.probe_latency_ms / 1000)
            failures.add_metric(labels, e.probe_failures)
            recent.add_metric([*labels, "ok"], probes.get((e.pk, True), 0))
            recent.add_metric([*labels, "error"], probes.get((e.pk, False), 0))
            requests.add_metric(labels, e.total_requests)
            errors.add_metric(labels, e.total_errors)
            if e.avg_latency_ms is not None:
                avg_latency.add_metric(labels, e.avg_latency_ms / 1000)
            if e.avg_tokens_per_sec is not None:
                avg_tps.add_metric(labels, e.avg_tokens_per_sec)
        yield from (health, last_ok, last_at, latency, failures, recent)
        yield from (requests, errors, avg_latency, avg_tps)


_registry = CollectorRegistry(auto_describe=False)
_registry.register(RegistryCollector())


def _allowed(request: HttpRequest) -> bool:
    if settings.ATHENA_METRICS_PUBLIC:
        return True
    try:
        if ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback:
            return True
    except ValueError:
        pass
    key = request.headers.get("X-API-Key", "").strip()
    if not key:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        key = credentials.strip() if scheme.lower() == "bearer" else ""
    return looks_like_service_key(key) and service_key_authenticate(key) is not None


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; 401 unless loopback, a service key, or metrics are public."""
    if not _allowed(request):
        response = HttpResponse(
            "metrics are served to loopback clients and service keys\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="athena"'
        return response
    body = generate_latest(_registry) + generate_latest(counters.REGISTRY)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
