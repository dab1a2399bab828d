"""Server-side SVG charts for the dashboard and an entry's change page: no JavaScript, no CDN.

Why SVG from the server: the figures are a few dozen points per chart, the page already
renders them, and an operator's machine may reach no CDN; a drawing library would be one
more pinned asset to vendor and keep, for no gain at this size. Every point is drawn as a
circle with a <title> (the browser's hover tooltip), so a series of one sample shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import TruncHour
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from backends.models import Health, HealthCheck, HourlyRollup, LLMBackend

__all__ = ["WORST_FIRST", "HealthCell", "entry_charts", "health_strip", "lines_chart"]

WIDTH, HEIGHT, PAD, AXIS = 600, 140, 6, 14
_COLOURS: dict[str, str] = {
    Health.HEALTHY: "#1a7f37",
    Health.DEGRADED: "#d4a72c",
    Health.DOWN: "#cf222e",
    Health.UNKNOWN: "#d0d7de",
}
_SERIES_COLOURS = ("#0969da", "#cf222e", "#8250df", "#bc4c00")
# Health's values, worst first (plain strings: the ORM's aggregate keys are strings).
WORST_FIRST = ["down", "degraded", "healthy"]


def _when(slot: datetime, step: timedelta) -> str:
    if step >= timedelta(days=1):
        return f"{slot:%Y-%m-%d}"
    return f"{slot:%Y-%m-%d %H:%M} UTC"


def _figure(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.1f}"


def lines_chart(
    series: dict[str, Sequence[float | None]],
    *,
    slots: Sequence[datetime],
    step: timedelta,
    title: str,
    unit: str,
) -> SafeString:
    """Several series on one scale over the same slots: a line and a dot per known value."""
    known = [v for values in series.values() for v in values if v is not None]
    if not known:
        return format_html('<p class="help chart-empty">{}: no samples.</p>', title)
    top = max(known) or 1.0
    x_step = (WIDTH - 2 * PAD) / max(len(slots) - 1, 1)
    plot_height = HEIGHT - 2 * PAD - AXIS
    radius = 3 if len(slots) <= 60 else 2
    shapes: list[SafeString] = []
    legend: list[SafeString] = []
    for (name, values), colour in zip(series.items(), _SERIES_COLOURS, strict=False):
        points = [
            (PAD + i * x_step, PAD + plot_height - (v / top) * plot_height, slots[i], v)
            for i, v in enumerate(values)
            if v is not None
        ]
        if len(points) > 1:
            shapes.append(
                format_html(
                    '<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>',
                    colour,
                    " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points),
                )
            )
        shapes.append(
            format_html_join(
                "",
                '<circle class="point" cx="{}" cy="{}" r="{}" fill="{}">'
                "<title>{}, {}: {} {}</title></circle>",
                (
                    (
                        f"{x:.1f}",
                        f"{y:.1f}",
                        radius,
                        colour,
                        name,
                        _when(slot, step),
                        _figure(v),
                        unit,
                    )
                    for x, y, slot, v in points
                ),
            )
        )
        legend.append(format_html('<span style="color:{}">● {}</span>', colour, name))
    axis = format_html(
        '<text x="{}" y="{}" font-size="10" fill="#57606a">{}</text>'
        '<text x="{}" y="{}" font-size="10" fill="#57606a" text-anchor="end">{}</text>',
        PAD, HEIGHT - 3, _when(slots[0], step),
        WIDTH - PAD, HEIGHT - 3, _when(slots[-1], step),
    )  # fmt: skip
    return format_html(
        '<figure class="chart" style="margin:0 0 1em"><figcaption>{} (max {} {}) {}</figcaption>'
        '<svg role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}"'
        ' style="background:#f6f8fa;border:1px solid #d0d7de">{}{}</svg></figure>',
        title, _figure(top), unit, mark_safe(" ".join(legend)),  # noqa: S308 - format_html parts
        title, WIDTH, HEIGHT, WIDTH, HEIGHT, mark_safe("".join(shapes)), axis,  # noqa: S308
    )  # fmt: skip


@dataclass(frozen=True)
class HealthCell:
    """One slot of a health strip: the worst state the probes left, and what they saw."""

    slot: datetime
    state: str
    probes: int = 0
    failed: int = 0
    error: str = ""

    def detail(self, step: timedelta) -> str:
        if not self.probes:
            return f"{_when(self.slot, step)}: {self.state} (no probe)"
        failures = f", {self.failed} failed" if self.failed else ""
        error = f": {self.error}" if self.error else ""
        probes = f"{self.probes} probe{'' if self.probes == 1 else 's'}"
        return f"{_when(self.slot, step)}: {self.state} ({probes}{failures}{error})"


def health_strip(cells: Sequence[HealthCell], *, step: timedelta, title: str) -> SafeString:
    """A bar per slot coloured by its worst state; hovering one shows its probes."""
    width = (WIDTH - 2 * PAD) / max(len(cells), 1)
    bars = format_html_join(
        "",
        '<rect class="health-cell" data-state="{}" x="{}" y="{}" width="{}" height="{}" fill="{}">'
        "<title>{}</title></rect>",
        (
            (c.state, f"{PAD + i * width:.1f}", PAD, f"{width:.1f}", 24, _COLOURS[c.state],
             c.detail(step))
            for i, c in enumerate(cells)
        ),
    )  # fmt: skip
    return format_html(
        '<figure class="health-strip" style="margin:0 0 1em"><figcaption>{}</figcaption>'
        '<svg role="img" aria-label="{}" width="{}" height="32" viewBox="0 0 {} 32">{}</svg>'
        "</figure>",
        title, title, WIDTH, WIDTH, bars,
    )  # fmt: skip


def _hours(since: datetime, count: int) -> list[datetime]:
    return [since + timedelta(hours=i) for i in range(count)]


def entry_charts(entry: LLMBackend, *, now: datetime | None = None) -> SafeString:
    """Latency, tokens/s and health per hour over the last 24 hours and 7 days."""
    now = now or timezone.now()
    hour = timedelta(hours=1)
    parts: list[SafeString] = []
    for label, hours in (("last 24 hours", 24), ("last 7 days", 24 * 7)):
        since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
        slots = _hours(since, hours)
        rollups = {r.hour: r for r in HourlyRollup.objects.filter(entry=entry, hour__gte=since)}
        checks = (
            HealthCheck.objects.filter(entry=entry, checked_at__gte=since)
            .annotate(hour=TruncHour("checked_at"))
            .values("hour")
            .annotate(
                probes=Count("pk"),
                failed=Count("pk", filter=Q(ok=False)),
                **{state: Count("pk", filter=Q(health=state)) for state in WORST_FIRST},
            )
        )
        cells: dict[datetime, HealthCell] = {}
        for row in checks:
            counts: dict[str, Any] = dict(row)
            cells[counts["hour"]] = HealthCell(
                slot=counts["hour"],
                state=next((s for s in WORST_FIRST if counts[s]), Health.UNKNOWN),
                probes=counts["probes"],
                failed=counts["failed"],
            )
        parts.append(format_html("<h3>{}</h3>", label.capitalize()))
        parts.append(
            lines_chart(
                {"p95": [getattr(rollups.get(h), "p95_latency_ms", None) for h in slots]},
                slots=slots,
                step=hour,
                title=f"p95 latency, {label}",
                unit="ms",
            )  # fmt: skip
        )
        parts.append(
            lines_chart(
                {"tok/s": [getattr(rollups.get(h), "avg_tokens_per_sec", None) for h in slots]},
                slots=slots,
                step=hour,
                title=f"Tokens/s, {label}",
                unit="tok/s",
            )  # fmt: skip
        )
        parts.append(
            health_strip(
                [cells.get(h, HealthCell(h, Health.UNKNOWN)) for h in slots],
                step=hour,
                title=f"Health, {label}",
            )
        )
    return mark_safe("".join(parts))  # noqa: S308 - every part is built by format_html
