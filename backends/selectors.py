"""Reads across the registry: routes for routers, and the chain behind each model."""

import hashlib
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, QuerySet

from backends.models import BackendType, FallbackLink, LLMBackend, is_model_name

FallbackGraph = dict[int, list[LLMBackend]]


def fallback_graph() -> FallbackGraph:
    """Every entry's fallbacks in chain order, read in one query."""
    graph: FallbackGraph = defaultdict(list)
    links = FallbackLink.objects.select_related("fallback").order_by("entry_id", "position")
    for link in links:
        graph[link.entry_id].append(link.fallback)
    return graph


def chain_entries(
    entry: LLMBackend, *, enabled_only: bool = True, graph: FallbackGraph | None = None
) -> list[LLMBackend]:
    """Return the entry and its fallbacks, depth-first in chain order, each entry once."""
    graph = fallback_graph() if graph is None else graph
    ordered: list[LLMBackend] = []
    seen: set[int] = set()
    stack = [entry]  # no recursion: a chain may be as long as the registry
    while stack:
        node = stack.pop()
        if node.pk in seen or (enabled_only and not node.enabled):
            continue
        seen.add(node.pk)
        ordered.append(node)
        stack.extend(reversed(graph.get(node.pk, [])))
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


def route_for_entry(entry: LLMBackend, graph: FallbackGraph | None = None) -> dict[str, Any]:
    """Build the ordered target list a router tries for this entry's model."""
    entries = chain_entries(entry, graph=graph)
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
    """Every enabled model's route, from two queries whatever the registry's size."""
    graph = fallback_graph()
    return [route_for_entry(e, graph) for e in LLMBackend.objects.filter(enabled=True)]


def routes_etag() -> str:
    """A strong ETag that changes whenever any route's body could, without building one.

    A route is made of entries (every write through the services or the admin actions
    moves `updated_at`; probes write `health` with an UPDATE that does not), the fallback
    links (replaced as a whole, so new ids), and ATHENA_DEFAULT_OLLAMA_URL. One ETag for the
    whole registry: a change anywhere revalidates every route, which is cheap; a probe round
    that changes no entry's health changes nothing.
    """
    digest = hashlib.sha256(settings.ATHENA_DEFAULT_OLLAMA_URL.encode())
    entries = LLMBackend.objects.order_by("pk").values_list("pk", "updated_at", "health")
    for pk, updated_at, health in entries:
        digest.update(f"{pk} {updated_at.isoformat()} {health}\n".encode())
    links = FallbackLink.objects.aggregate(n=Count("pk"), top=Max("pk"))
    digest.update(f"links {links['n']} {links['top']}".encode())
    return f'"{digest.hexdigest()[:32]}"'


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
