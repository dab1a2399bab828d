"""Reads across the registry: routes for routers, and the chain behind each model."""

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from backends.models import BackendType, LLMBackend, is_model_name


def chain_entries(entry: LLMBackend, *, enabled_only: bool = True) -> list[LLMBackend]:
    """Return the entry and its fallbacks, depth-first in chain order, each entry once."""
    ordered: list[LLMBackend] = []
    seen: set[int] = set()

    def visit(node: LLMBackend) -> None:
        if node.pk in seen or (enabled_only and not node.enabled):
            return
        seen.add(node.pk)
        ordered.append(node)
        for link in node.fallback_links.select_related("fallback").order_by("position"):
            visit(link.fallback)

    visit(entry)
    return ordered


def _target(entry: LLMBackend, backend_type: str, endpoint_url: str) -> dict[str, Any]:
    return {
        "entry_id": entry.pk,
        "model_name": entry.model_name,
        "backend_type": backend_type,
        "endpoint_url": endpoint_url.rstrip("/"),
        "upstream_model": entry.resolved_upstream_model,
        "timeout_seconds": entry.timeout_seconds,
        "first_token_timeout_seconds": entry.first_token_timeout_seconds,
        "max_tokens": entry.max_tokens,
        "temperature_default": entry.temperature_default,
        "health": entry.health,
    }


def targets_for_entry(entry: LLMBackend, *, has_chain: bool) -> list[dict[str, Any]]:
    """Expand one entry into concrete targets; `auto` alone means MLX, then default Ollama."""
    if entry.backend_type != BackendType.AUTO:
        return [_target(entry, entry.backend_type, entry.endpoint_url)]
    targets = [_target(entry, "mlx", entry.endpoint_url)]
    if not has_chain:
        # The plan's meaning of auto, with the Ollama URL now a setting instead of a literal.
        # The fallback keeps the MLX target's health: probes only see the configured endpoint.
        ollama = _target(entry, "ollama", settings.ATHENA_DEFAULT_OLLAMA_URL)
        ollama["health"] = "unknown"
        targets.append(ollama)
    return targets


def route_for_entry(entry: LLMBackend) -> dict[str, Any]:
    """Build the ordered target list a router tries for this entry's model."""
    entries = chain_entries(entry)
    targets: list[dict[str, Any]] = []
    for node in entries:
        targets.extend(targets_for_entry(node, has_chain=len(entries) > 1))
    return {"model": entry.model_name, "targets": targets}


def enabled_entry(
    model_name: str, queryset: QuerySet[LLMBackend] | None = None
) -> LLMBackend | None:
    """The enabled entry for a model name; a name no entry could have is not looked up."""
    if not is_model_name(model_name):
        return None
    entries = LLMBackend.objects.all() if queryset is None else queryset
    return entries.filter(model_name=model_name, enabled=True).first()


def route_for_model(model_name: str) -> dict[str, Any] | None:
    """Return the route for an enabled model, or None when no enabled entry has that name."""
    entry = enabled_entry(model_name)
    return route_for_entry(entry) if entry else None


def all_routes() -> list[dict[str, Any]]:
    return [route_for_entry(e) for e in LLMBackend.objects.filter(enabled=True)]


def etag_for(body: Any) -> str:
    """A strong ETag of a JSON-serialisable body, stable across key order."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
    return f'"{digest}"'


def entries_for_metrics() -> QuerySet[LLMBackend]:
    """Every enabled entry with the health and probe fields /metrics exports, by id."""
    return (
        LLMBackend.objects.filter(enabled=True)
        .order_by("pk")
        .only(
            "pk",
            "model_name",
            "backend_type",
            "health",
            "health_checked_at",
            "probe_failures",
            "probe_successes",
            "probe_latency_ms",
            "total_requests",
            "total_errors",
            "avg_latency_ms",
            "avg_tokens_per_sec",
        )
    )


def probe_counts_since(since: Any) -> dict[tuple[int, bool], int]:
    """Count probe records since a time, by (entry id, ok)."""
    from django.db.models import Count

    from backends.models import HealthCheck

    rows = (
        HealthCheck.objects.filter(checked_at__gte=since)
        .order_by()
        .values("entry_id", "ok")
        .annotate(n=Count("id"))
    )
    return {(row["entry_id"], row["ok"]): row["n"] for row in rows}
