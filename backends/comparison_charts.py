"""Server-rendered SVG for a comparison's result page: one dot plot per figure, no JavaScript.

Each target is a row: every measured call is a dot (so one sample still shows), a grey bar
spans the lowest to the highest, a dark tick marks the median.
"""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from backends.comparison_selectors import Spread

__all__ = ["dot_plot"]

WIDTH, LABEL, ROW, TOP, AXIS = 640, 230, 28, 8, 26
_PLOT = WIDTH - LABEL - 16
_DOT = "#0969da"
_BEST = "#1a7f37"


def _short(label: str, limit: int = 36) -> str:
    return label if len(label) <= limit else "…" + label[-(limit - 1) :]


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def dot_plot(
    rows: list[tuple[str, Spread]], *, title: str, unit: str, best: int | None = None
) -> SafeString:
    """Draw each (label, spread) as a row on one scale from 0; row `best` in green."""
    values = [v for _, spread in rows for v in spread.samples]
    top = max(values, default=0.0) * 1.05 or 1.0
    height = TOP + ROW * len(rows) + AXIS

    def x(value: float) -> float:
        return LABEL + value / top * _PLOT

    parts: list[SafeString] = []
    for i, (label, spread) in enumerate(rows):
        mid = TOP + ROW * i + ROW / 2
        colour = _BEST if i == best else _DOT
        parts.append(
            format_html(
                '<text x="{}" y="{}" font-size="12" text-anchor="end" dominant-baseline="middle">'
                "<title>{}</title>{}</text>",
                LABEL - 8,
                f"{mid:.1f}",
                label,
                _short(label),
            )  # fmt: skip
        )
        if not spread.samples:
            parts.append(
                format_html(
                    '<text x="{}" y="{}" font-size="12" fill="#57606a" dominant-baseline="middle">'
                    "no answer</text>",
                    LABEL + 4,
                    f"{mid:.1f}",
                )  # fmt: skip
            )
            continue
        low, high, median = spread.low or 0.0, spread.high or 0.0, spread.median or 0.0
        parts.append(
            format_html(
                '<line class="spread" x1="{}" x2="{}" y1="{}" y2="{}" stroke="#afb8c1"'
                ' stroke-width="6" stroke-linecap="round"/>',
                f"{x(low):.1f}",
                f"{x(high):.1f}",
                f"{mid:.1f}",
                f"{mid:.1f}",
            )  # fmt: skip
        )
        parts.append(
            format_html_join(
                "",
                '<circle class="sample" cx="{}" cy="{}" r="4" fill="{}" fill-opacity="0.6">'
                "<title>{} {}</title></circle>",
                ((f"{x(v):.1f}", f"{mid:.1f}", colour, _number(v), unit) for v in spread.samples),
            )
        )
        parts.append(
            format_html(
                '<line class="median" x1="{}" x2="{}" y1="{}" y2="{}" stroke="#24292f"'
                ' stroke-width="2"><title>median {} {}</title></line>',
                f"{x(median):.1f}",
                f"{x(median):.1f}",
                f"{mid - 9:.1f}",
                f"{mid + 9:.1f}",
                _number(median),
                unit,
            )  # fmt: skip
        )
    axis_y = TOP + ROW * len(rows) + 4
    ticks = format_html_join(
        "",
        '<text x="{}" y="{}" font-size="11" fill="#57606a" text-anchor="middle">{}</text>',
        ((f"{x(v):.1f}", axis_y + 16, _number(v)) for v in (0.0, top / 2, top)),
    )
    return format_html(
        '<figure class="comparison-chart"><figcaption>{} ({})</figcaption>'
        '<svg role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}"'
        ' style="max-width:100%;height:auto;background:#f6f8fa;border:1px solid #d0d7de">'
        '{}<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#8c959f"/>{}</svg></figure>',
        title, unit, title, WIDTH, height, WIDTH, height,
        mark_safe("".join(parts)),  # noqa: S308 - every part is built by format_html
        LABEL, LABEL + _PLOT, axis_y, axis_y, ticks,
    )  # fmt: skip
