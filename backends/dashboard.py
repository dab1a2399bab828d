"""Reads behind the operator's dashboard: every chain, its health and its last 24 hours.

Plain functions over the registry, each a fixed number of queries whatever the number of
entries (the aggregates are computed by the database, grouped by entry and hour).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, F, FloatField, Max, Q, Sum
from django.db.models.functions import Cast, TruncHour
from django.utils import timezone
from django.utils.safestring import SafeString

from backends.charts import health_strip, lines_chart
from backends.models import (
    FallbackLink,
    HealthCheck,
    HourlyRollup,
    LLMBackend,
    RequestSample,
)
from backends.selectors import targets_for_entry

__all__ = ["Dashboard", "EntryPanel", "dashboard"]

HOURS = 24
# Health's values, worst first (plain strings: the ORM's aggregate keys are strings).
_WORST_FIRST = ["down", "degraded", "healthy"]
_UNKNOWN = "unknown"


@dataclass
class EntryPanel:
    """One model: its chain of targets and what the last 24 hours looked like."""

    entry: LLMBackend
    targets: list[dict[str, Any]]
    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    avg_latency_ms: float | None = None  # weighted by successful calls, from the roll-ups
    worst_p95_latency_ms: float | None = None  # the worst hour's p95 (p95s do not add up)
    avg_tokens_per_sec: float | None = None
    health_timeline: SafeString = field(default_factory=SafeString)
    latency_chart: SafeString = field(default_factory=SafeString)
    tokens_chart: SafeString = field(default_factory=SafeString)

    @property
    def error_rate(self) -> float | None:
        return 100 * self.errors / self.requests if self.requests else None


@dataclass
class Dashboard:
    since: datetime
    panels: list[EntryPanel]
    requests: int
    errors: int
    fallbacks: int
    errors_by_kind: list[tuple[str, int]]
    traffic_chart: SafeString


def _chains(entries: list[LLMBackend]) -> dict[int, list[dict[str, Any]]]:
    """Each entry's targets, as routers get them, from one query for every fallback link."""
    by_id = {e.pk: e for e in entries}
    links: dict[int, list[int]] = defaultdict(list)
    for entry_id, fallback_id in FallbackLink.objects.order_by("entry", "position").values_list(
        "entry_id", "fallback_id"
    ):
        links[entry_id].append(fallback_id)

    def walk(entry_id: int, seen: list[int]) -> None:
        # Same order as selectors.chain_entries: depth-first, each enabled entry once.
        if entry_id in seen or not by_id[entry_id].enabled:
            return
        seen.append(entry_id)
        for fallback_id in links[entry_id]:
            walk(fallback_id, seen)

    chains = {}
    for entry in entries:
        ids: list[int] = []
        walk(entry.pk, ids)
        nodes = [by_id[i] for i in ids] or [entry]  # a disabled entry still shows its own target
        chains[entry.pk] = [
            target for node in nodes for target in targets_for_entry(node, has_chain=len(nodes) > 1)
        ]
    return chains


def _worst_health_per_hour(since: datetime) -> dict[int, dict[datetime, str]]:
    """Per entry and hour, the worst state any probe left the entry in."""
    rows = (
        HealthCheck.objects.filter(checked_at__gte=since)
        .annotate(hour=TruncHour("checked_at"))
        .values("entry_id", "hour")
        .annotate(**{state: Count("pk", filter=Q(health=state)) for state in _WORST_FIRST})
    )
    worst: dict[int, dict[datetime, str]] = defaultdict(dict)
    for row in rows:
        counts: dict[str, Any] = dict(row)
        worst[counts["entry_id"]][counts["hour"]] = next(
            (state for state in _WORST_FIRST if counts[state]), _UNKNOWN
        )
    return worst


def _rollups(since: datetime) -> dict[int, dict[datetime, HourlyRollup]]:
    by_entry: dict[int, dict[datetime, HourlyRollup]] = defaultdict(dict)
    for rollup in HourlyRollup.objects.filter(hour__gte=since):
        by_entry[rollup.entry_id][rollup.hour] = rollup
    return by_entry


def _rollup_figures(since: datetime) -> dict[int, dict[str, float | None]]:
    """Per entry over the window: means weighted by their sample counts, the worst p95."""
    rows = (
        HourlyRollup.objects.filter(hour__gte=since)
        .values("entry_id")
        .annotate(
            latency_sum=Sum(F("avg_latency_ms") * F("ok_requests"), output_field=FloatField()),
            ok_requests=Sum("ok_requests"),
            tps_sum=Sum(F("avg_tokens_per_sec") * F("tps_samples"), output_field=FloatField()),
            tps_samples=Sum("tps_samples"),
            worst_p95=Max("p95_latency_ms"),
        )
    )
    return {
        row["entry_id"]: {
            "avg_latency_ms": row["latency_sum"] / row["ok_requests"]
            if row["ok_requests"] and row["latency_sum"] is not None
            else None,
            "avg_tokens_per_sec": row["tps_sum"] / row["tps_samples"]
            if row["tps_samples"] and row["tps_sum"] is not None
            else None,
            "worst_p95_latency_ms": row["worst_p95"],
        }
        for row in rows
    }


def _sample_counts(since: datetime) -> dict[int | None, dict[str, int]]:
    """Per entry: requests, errors and calls served by a fallback target, from the samples."""
    rows = (
        RequestSample.objects.filter(started_at__gte=since)
        .values("entry_id")
        .annotate(
            requests=Count("pk"),
            errors=Count("pk", filter=Q(ok=False)),
            fallbacks=Count("pk", filter=Q(fallback=True)),
        )
    )
    return {
        row["entry_id"]: {
            "requests": row["requests"],
            "errors": row["errors"],
            "fallbacks": row["fallbacks"],
        }
        for row in rows
    }


def _traffic_chart(since: datetime, slots: list[datetime]) -> SafeString:
    rows = (
        RequestSample.objects.filter(started_at__gte=since)
        .annotate(hour=TruncHour("started_at"))
        .values("hour")
        .annotate(
            errors=Cast(Count("pk", filter=Q(ok=False)), FloatField()),
            fallbacks=Cast(Count("pk", filter=Q(fallback=True)), FloatField()),
        )
    )
    by_hour = {row["hour"]: row for row in rows}
    return lines_chart(
        {
            name: [by_hour[h][name] if h in by_hour else 0.0 for h in slots]
            for name in ("errors", "fallbacks")
        },
        title="Errors and fallbacks per hour, all models",
        unit="calls",
    )


def dashboard(*, now: datetime | None = None) -> Dashboard:
    """Everything the dashboard shows for the last 24 hours, in a fixed number of queries."""
    now = now or timezone.now()
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
    slots = [since + timedelta(hours=i) for i in range(HOURS)]
    entries = list(LLMBackend.objects.order_by("model_name"))
    chains = _chains(entries)
    health = _worst_health_per_hour(since)
    rollups = _rollups(since)
    figures = _rollup_figures(since)
    counts = _sample_counts(since)

    panels = []
    for entry in entries:
        hourly = rollups.get(entry.pk, {})
        count = counts.get(entry.pk, {})
        figure = figures.get(entry.pk, {})
        panel = EntryPanel(
            entry=entry,
            targets=chains[entry.pk],
            requests=count.get("requests", 0),
            errors=count.get("errors", 0),
            fallbacks=count.get("fallbacks", 0),
            avg_latency_ms=figure.get("avg_latency_ms"),
            worst_p95_latency_ms=figure.get("worst_p95_latency_ms"),
            avg_tokens_per_sec=figure.get("avg_tokens_per_sec"),
        )
        panel.health_timeline = health_strip(
            [health.get(entry.pk, {}).get(h, _UNKNOWN) for h in slots],
            title=f"Health, last {HOURS} hours",
        )
        panel.latency_chart = lines_chart(
            {
                "p95": [getattr(hourly.get(h), "p95_latency_ms", None) for h in slots],
                "avg": [getattr(hourly.get(h), "avg_latency_ms", None) for h in slots],
            },
            title="Latency per hour",
            unit="ms",
        )
        panel.tokens_chart = lines_chart(
            {"tok/s": [getattr(hourly.get(h), "avg_tokens_per_sec", None) for h in slots]},
            title="Tokens/s per hour",
            unit="tok/s",
        )
        panels.append(panel)

    kinds = (
        RequestSample.objects.filter(started_at__gte=since, ok=False)
        .values_list("error_kind")
        .annotate(n=Count("pk"))
        .order_by("-n", "error_kind")
    )
    totals = [
        sum(c.get(k, 0) for c in counts.values()) for k in ("requests", "errors", "fallbacks")
    ]
    return Dashboard(
        since=since,
        panels=panels,
        requests=totals[0],
        errors=totals[1],
        fallbacks=totals[2],
        errors_by_kind=[(kind or "unknown", n) for kind, n in kinds],
        traffic_chart=_traffic_chart(since, slots),
    )
