"""The admin's process-local counters: what happens inside one request, not in the database.

The registry's figures are read from the database at scrape time (athena_admin/metrics.py);
these count events of the process that serves the scrape (with several workers, each
counts its own; Prometheus sums them across scrapes of each).
"""

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["CACHE_DEGRADED", "CACHE_FAILURES", "REGISTRY", "SAMPLES_REJECTED"]

REGISTRY = CollectorRegistry(auto_describe=True)

SAMPLES_REJECTED = Counter(
    "athena_admin_samples_rejected",
    "Request samples dropped from an ingest batch as invalid, by the first bad field.",
    ["field"],
    registry=REGISTRY,
)
CACHE_FAILURES = Counter(
    "athena_admin_cache_failures",
    "Shared-cache (Redis) operations that failed and were answered from local memory.",
    ["operation"],
    registry=REGISTRY,
)
CACHE_DEGRADED = Gauge(
    "athena_admin_cache_degraded",
    "1 while the shared cache (Redis) is unreachable and this process uses local memory.",
    registry=REGISTRY,
)
