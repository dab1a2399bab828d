"""Server-side SVG charts for an entry's change page: no JavaScript, no CDN."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import TruncHour
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from backends.models import Health, HealthCheck, HourlyRollup, LLMBackend

WIDTH, HEIGHT, PAD = 600, 120, 4
_COLOURS: dict[str, str] = {
    Health.HEALTHY: "#1a7f37",
    Health.DEGRADED: "#d4a72c",
    Health.DOWN: "#cf222e",
    Health.UNKNOWN: "#d0d7de",
}


def _line(values: list[float | None], *, title: str, unit: str) -> SafeString:
    known = [v for v in values if v is not None]
    if not known:
        return format_html('<p class="help">{}: no samples.</p>', title)
    top = max(known) or 1.0
    step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)
    points = [
        (PAD + i * step, HEIGHT - PAD - (v / top) * (HEIGHT - 2 * PAD))
        for i, v in enumerate(values)
        if v is not None
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return format_html(
        '<figure style="margin:0 0 1em"><figcaption>{} (max {} {})</figcaption>'
        '<svg role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}"'
        ' style="background:#f6f8fa;border:1px solid #d0d7de">'
        '<polyline fill="none" stroke="#0969da" stroke-width="2" points="{}"/></svg></figure>',
        title, f"{top:.0f}", unit, title, WIDTH, HEIGHT, WIDTH, HEIGHT, path,
    )  # fmt: skip


_SERIES_COLOURS = ("#0969da", "#8250df", "#cf222e", "#1a7f37")


def _lines(series: dict[str, list[float | None]], *, title: str, unit: str) -> SafeString:
    """Several series on one scale, each its own polyline, named in the caption."""
    known = [v for values in series.values() for v in values if v is not None]
    if not known:
        return format_html('<p class="help">{}: no samples.</p>', title)
    top = max(known) or 1.0
    polylines, legend = [], []
    for (name, values), colour in zip(series.items(), _SERIES_COLOURS, strict=False):
        step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)
        points = " ".join(
            f"{PAD + i * step:.1f},{HEIGHT - PAD - (v / top) * (HEIGHT - 2 * PAD):.1f}"
            for i, v in enumerate(values)
            if v is not None
        )
        polylines.append(
            format_html(
                '<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>', colour, points
            )
        )
        legend.append(format_html('<span style="color:{}">━ {}</span>', colour, name))
    return format_html(
        '<figure style="margin:0 0 1em"><figcaption>{} (max {} {}) {}</figcaption>'
        '<svg role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}"'
        ' style="background:#f6f8fa;border:1px solid #d0d7de">{}</svg></figure>',
        title, f"{top:.0f}", unit, mark_safe(" ".join(legend)),  # noqa: S308 - format_html parts
        title, WIDTH, HEIGHT, WIDTH, HEIGHT, mark_safe("".join(polylines)),  # noqa: S308
    )  # fmt: skip


def _strip(states: list[str], *, title: str) -> SafeString:
    width = (WIDTH - 2 * PAD) / max(len(states), 1)
    bars = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>',
        (
            (f"{PAD + i * width:.1f}", PAD, f"{width:.1f}", 24, _COLOURS[s], s)
            for i, s in enumerate(states)
        ),
    )
    return format_html(
        '<figure style="margin:0 0 1em"><figcaption>{}</figcaption>'
        '<svg role="img" aria-label="{}" width="{}" height="32" viewBox="0 0 {} 32">{}</svg>'
        "</figure>",
        title, title, WIDTH, WIDTH, bars,
    )  # fmt: skip


def _hours(since: datetime, count: int) -> list[datetime]:
    return [since + timedelta(hours=i) for i in range(count)]


def entry_charts(entry: LLMBackend, *, now: datetime | None = None) -> SafeString:
    """Latency, tokens/s and health per hour over the last 24 hours and 7 days."""
    now = now or timezone.now()
    parts: list[SafeString] = []
    for label, hours in (("last 24 hours", 24), ("last 7 days", 24 * 7)):
        since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
        slots = _hours(since, hours)
        rollups = {r.hour: r for r in HourlyRollup.objects.filter(entry=entry, hour__gte=since)}
        p95 = [getattr(rollups.get(h), "p95_latency_ms", None) for h in slots]
        tps = [getattr(rollups.get(h), "avg_tokens_per_sec", None) for h in slots]
        checks = (
            HealthCheck.objects.filter(entry=entry, checked_at__gte=since)
            .annotate(hour=TruncHour("checked_at"))
            .values("hour")
            .annotate(
                down=Count("pk", filter=Q(health=Health.DOWN)),
                degraded=Count("pk", filter=Q(health=Health.DEGRADED)),
                healthy=Count("pk", filter=Q(health=Health.HEALTHY)),
            )
        )
        worst: dict[datetime, str] = {}
        for c in checks:
            counts: dict[str, Any] = dict(c)
            state = Health.UNKNOWN
            for name in (Health.DOWN, Health.DEGRADED, Health.HEALTHY):
                if counts[name]:
                    state = name
                    break
            worst[c["hour"]] = state
        parts.append(format_html("<h3>{}</h3>", label.capitalize()))
        parts.append(_line(p95, title=f"p95 latency, {label}", unit="ms"))
        parts.append(_line(tps, title=f"Tokens/s, {label}", unit="tok/s"))
        parts.append(
            _strip([worst.get(h, Health.UNKNOWN) for h in slots], title=f"Health, {label}")
        )
    return mark_safe("".join(parts))  # noqa: S308 - every part is built by format_html


# The dashboard (backends/dashboard.py) draws with the same primitives.
line_chart, lines_chart, health_strip = _line, _lines, _strip
