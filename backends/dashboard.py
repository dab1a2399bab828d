"""Reads behind the operator's dashboard: every chain, its health and its traffic over a range.

Plain functions over the registry, each a fixed number of queries whatever the number of
entries. Figures come from the request samples, aggregated by the database per entry, per
target (entry, backend type, endpoint) and per time slot: the hourly roll-ups hold neither
time-to-first-token percentiles, nor errors by kind, nor fallbacks, nor anything per target,
and percentiles cannot be added up from hourly ones. Samples are kept
ATHENA_SAMPLE_RETENTION_DAYS (30 by default), which covers the longest range.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Avg, Count, DateTimeField, Max, Q
from django.db.models.functions import Trunc
from django.utils import timezone
from django.utils.safestring import SafeString

from backends.aggregates import Percentile
from backends.charts import WORST_FIRST, HealthCell, health_strip, lines_chart
from backends.models import FallbackLink, Health, HealthCheck, LLMBackend, RequestSample
from backends.selectors import targets_for_entry

__all__ = ["RANGES", "Dashboard", "EntryPanel", "TimeRange", "dashboard"]


@dataclass(frozen=True)
class TimeRange:
    """A window ending now, cut into slots of one `unit` (a Trunc kind)."""

    key: str
    label: str
    unit: str
    step: timedelta
    slots: int

    def window(self, now: datetime) -> list[datetime]:
        """The slots' starts, oldest first; the last one holds now."""
        start = now.replace(second=0, microsecond=0)
        if self.unit in ("hour", "day"):
            start = start.replace(minute=0)
        if self.unit == "day":
            start = start.replace(hour=0)
        first = start - self.step * (self.slots - 1)
        return [first + self.step * i for i in range(self.slots)]


RANGES: dict[str, TimeRange] = {
    r.key: r
    for r in (
        TimeRange("1h", "last hour", "minute", timedelta(minutes=1), 60),
        TimeRange("24h", "last 24 hours", "hour", timedelta(hours=1), 24),
        TimeRange("7d", "last 7 days", "hour", timedelta(hours=1), 24 * 7),
        TimeRange("30d", "last 30 days", "day", timedelta(days=1), 30),
    )
}
DEFAULT_RANGE = "24h"

# What each figure is, over the samples of a group (an entry, a target, a slot).
_FIGURES: dict[str, Any] = {
    "calls": Count("pk"),
    "errors": Count("pk", filter=Q(ok=False)),
    "fallbacks": Count("pk", filter=Q(fallback=True)),
    "avg_latency_ms": Avg("latency_ms", filter=Q(ok=True)),
    "p95_latency_ms": Percentile("latency_ms", 0.95, filter=Q(ok=True)),
    "ttft_p50_ms": Percentile("ttft_ms", 0.5, filter=Q(ok=True)),
    "ttft_p95_ms": Percentile("ttft_ms", 0.95, filter=Q(ok=True)),
    "tokens_per_sec": Avg("tokens_per_sec", filter=Q(ok=True)),
}
_COUNTS = ("calls", "errors", "fallbacks", "cold_starts")


def _figures() -> dict[str, Any]:
    # Cold starts as the roll-ups count them: a model load longer than ATHENA_COLD_START_MS.
    cold = Q(load_ms__gt=settings.ATHENA_COLD_START_MS)
    return {**_FIGURES, "cold_starts": Count("pk", filter=cold)}


def _figures_by(since: datetime, *group: str) -> list[dict[str, Any]]:
    """The figures of the samples since a time, grouped by the given fields."""
    return list(_samples(since).values(*group).annotate(**_figures()).order_by())


def _samples(since: datetime) -> Any:
    return RequestSample.objects.filter(started_at__gte=since)


@dataclass
class EntryPanel:
    """One model: its chain of targets, each with its figures, and the range's charts."""

    entry: LLMBackend
    targets: list[dict[str, Any]]
    figures: dict[str, Any] = field(default_factory=dict)
    errors_by_kind: list[tuple[str, int]] = field(default_factory=list)
    health_timeline: SafeString = field(default_factory=SafeString)
    calls_chart: SafeString = field(default_factory=SafeString)
    ttft_chart: SafeString = field(default_factory=SafeString)
    latency_chart: SafeString = field(default_factory=SafeString)
    tokens_chart: SafeString = field(default_factory=SafeString)

    @property
    def error_rate(self) -> float | None:
        calls = self.figures.get("calls", 0)
        return 100 * self.figures.get("errors", 0) / calls if calls else None


@dataclass
class Dashboard:
    time_range: TimeRange
    since: datetime
    panels: list[EntryPanel]
    totals: dict[str, int]
    errors_by_kind: list[tuple[str, int]]
    traffic_chart: SafeString
    ranges: list[TimeRange] = field(default_factory=lambda: list(RANGES.values()))


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


def _target_key(entry_id: Any, backend_type: str, endpoint_url: str) -> tuple[Any, str, str]:
    return (entry_id, backend_type, endpoint_url.rstrip("/"))


def _health_cells(since: datetime, time_range: TimeRange) -> dict[int, dict[datetime, HealthCell]]:
    """Per entry and slot: the worst state any probe left the entry in, and the probes' story."""
    rows = (
        HealthCheck.objects.filter(checked_at__gte=since)
        .annotate(slot=Trunc("checked_at", time_range.unit, output_field=DateTimeField()))
        .values("entry_id", "slot")
        .annotate(
            probes=Count("pk"),
            failed=Count("pk", filter=Q(ok=False)),
            error=Max("error"),
            **{state: Count("pk", filter=Q(health=state)) for state in WORST_FIRST},
        )
        .order_by()
    )
    cells: dict[int, dict[datetime, HealthCell]] = defaultdict(dict)
    for row in rows:
        counts: dict[str, Any] = dict(row)
        cells[counts["entry_id"]][counts["slot"]] = HealthCell(
            slot=counts["slot"],
            state=next((state for state in WORST_FIRST if counts[state]), Health.UNKNOWN),
            probes=counts["probes"],
            failed=counts["failed"],
            error=counts["error"] or "",
        )
    return cells


def _errors_by_kind(since: datetime) -> dict[tuple[Any, str, str], dict[str, int]]:
    """Failed calls per target and error kind (the kinds of docs/architecture.md's samples)."""
    rows = (
        _samples(since)
        .filter(ok=False)
        .values("entry_id", "backend_type", "endpoint_url", "error_kind")
        .annotate(n=Count("pk"))
        .order_by()
    )
    kinds: dict[tuple[Any, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        key = _target_key(row["entry_id"], row["backend_type"], row["endpoint_url"])
        kinds[key][row["error_kind"] or "unknown"] += row["n"]
    return kinds


def _ranked(kinds: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(kinds.items(), key=lambda item: (-item[1], item[0]))


def _series(
    rows: dict[datetime, dict[str, Any]], slots: list[datetime], name: str, *, count: bool
) -> list[float | None]:
    # A count is 0 in a slot without samples; a mean or percentile there is unknown.
    empty = 0.0 if count else None
    return [
        float(rows[s][name]) if s in rows and rows[s][name] is not None else empty for s in slots
    ]


def _panel_charts(
    panel: EntryPanel, rows: dict[datetime, dict[str, Any]], slots: list[datetime], tr: TimeRange
) -> None:
    per = f"per {tr.unit}"
    chart: dict[str, Any] = {"slots": slots, "step": tr.step}
    # Counts read 0 in a slot without calls, so an entry with no call at all says so instead.
    counts = {"calls": "calls", "errors": "errors", "fallbacks": "fallbacks"}
    counts["cold starts"] = "cold_starts"
    panel.calls_chart = lines_chart(
        {name: _series(rows, slots, key, count=True) for name, key in counts.items() if rows},
        title=f"Calls {per}",
        unit="calls",
        **chart,
    )
    panel.ttft_chart = lines_chart(
        {
            "p50": _series(rows, slots, "ttft_p50_ms", count=False),
            "p95": _series(rows, slots, "ttft_p95_ms", count=False),
        },
        title=f"Time to first token {per}",
        unit="ms",
        **chart,
    )
    panel.latency_chart = lines_chart(
        {
            "p95": _series(rows, slots, "p95_latency_ms", count=False),
            "avg": _series(rows, slots, "avg_latency_ms", count=False),
        },
        title=f"Latency {per}",
        unit="ms",
        **chart,
    )
    panel.tokens_chart = lines_chart(
        {"tok/s": _series(rows, slots, "tokens_per_sec", count=False)},
        title=f"Tokens/s {per}",
        unit="tok/s",
        **chart,
    )


def _traffic_chart(since: datetime, slots: list[datetime], tr: TimeRange) -> SafeString:
    rows = {
        row["slot"]: row
        for row in _samples(since)
        .annotate(slot=Trunc("started_at", tr.unit, output_field=DateTimeField()))
        .values("slot")
        .annotate(
            calls=Count("pk"),
            errors=Count("pk", filter=Q(ok=False)),
            fallbacks=Count("pk", filter=Q(fallback=True)),
        )
        .order_by()
    }
    names = ("calls", "errors", "fallbacks") if rows else ()
    return lines_chart(
        {name: _series(rows, slots, name, count=True) for name in names},
        slots=slots,
        step=tr.step,
        title=f"Calls, errors and fallbacks per {tr.unit}, all models",
        unit="calls",
    )


def dashboard(*, time_range: str = DEFAULT_RANGE, now: datetime | None = None) -> Dashboard:
    """Everything the dashboard shows for a range, in a fixed number of queries."""
    tr = RANGES[time_range]
    slots = tr.window(now or timezone.now())
    since = slots[0]
    entries = list(LLMBackend.objects.order_by("model_name"))
    chains = _chains(entries)
    health = _health_cells(since, tr)
    kinds = _errors_by_kind(since)
    by_entry = {row["entry_id"]: row for row in _figures_by(since, "entry_id")}
    by_target = {
        _target_key(row["entry_id"], row["backend_type"], row["endpoint_url"]): row
        for row in _figures_by(since, "entry_id", "backend_type", "endpoint_url")
    }
    by_slot: dict[int, dict[datetime, dict[str, Any]]] = defaultdict(dict)
    for row in (
        _samples(since)
        .annotate(slot=Trunc("started_at", tr.unit, output_field=DateTimeField()))
        .values("entry_id", "slot")
        .annotate(**_figures())
        .order_by()
    ):
        by_slot[row["entry_id"]][row["slot"]] = row

    panels = []
    for entry in entries:
        targets = []
        for target in chains[entry.pk]:
            key = _target_key(target["entry_id"], target["backend_type"], target["endpoint_url"])
            targets.append(
                {
                    **target,
                    "figures": by_target.get(key, {}),
                    "errors_by_kind": _ranked(kinds.get(key, {})),
                }
            )
        entry_kinds: dict[str, int] = defaultdict(int)
        for key, counts in kinds.items():
            if key[0] == entry.pk:
                for kind, n in counts.items():
                    entry_kinds[kind] += n
        panel = EntryPanel(
            entry=entry,
            targets=targets,
            figures=by_entry.get(entry.pk, {}),
            errors_by_kind=_ranked(entry_kinds),
        )
        cells = health.get(entry.pk, {})
        panel.health_timeline = health_strip(
            [cells.get(s, HealthCell(s, Health.UNKNOWN)) for s in slots],
            step=tr.step,
            title=f"Health, {tr.label}",
        )
        _panel_charts(panel, by_slot.get(entry.pk, {}), slots, tr)
        panels.append(panel)

    all_kinds: dict[str, int] = defaultdict(int)
    for counts in kinds.values():
        for kind, n in counts.items():
            all_kinds[kind] += n
    return Dashboard(
        time_range=tr,
        since=since,
        panels=panels,
        totals={name: sum(row[name] for row in by_entry.values()) for name in _COUNTS},
        errors_by_kind=_ranked(all_kinds),
        traffic_chart=_traffic_chart(since, slots, tr),
    )
