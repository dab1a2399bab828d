"""A percentile the database computes: PostgreSQL's percentile_cont, SQLite by a registered one.

The dashboard needs TTFT and latency percentiles over any window, per model and per target;
the hourly roll-ups keep only a latency p95 per entry and hour, and percentiles do not add up,
so they are computed from the samples. SQLite has no percentile aggregate: `register_sqlite`
gives each connection one with percentile_cont's definition (linear interpolation).
"""

from __future__ import annotations

import math
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Aggregate, FloatField

__all__ = ["Percentile", "percentile_cont", "register_sqlite"]

_SQLITE_NAME = "athena_percentile_cont"


def percentile_cont(values: list[float], fraction: float) -> float | None:
    """percentile_cont over values: v[lo] + f * (v[lo + 1] - v[lo]), pos = fraction * (n - 1)."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


class _SqlitePercentile:
    """sqlite3's aggregate protocol: step per row, finalize once."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.fraction = 0.5

    def step(self, value: float | None, fraction: float) -> None:
        self.fraction = fraction
        if value is not None:
            self.values.append(float(value))

    def finalize(self) -> float | None:
        return percentile_cont(self.values, self.fraction)


def register_sqlite(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """connection_created receiver: give a new SQLite connection the percentile aggregate."""
    if connection.vendor == "sqlite":
        connection.connection.create_aggregate(_SQLITE_NAME, 2, _SqlitePercentile)


class Percentile(Aggregate):
    """The continuous percentile of an expression, e.g. Percentile("ttft_ms", 0.95)."""

    function = "percentile_cont"
    name = "Percentile"
    output_field = FloatField()
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be within 0 and 1, not {fraction}")
        self.fraction = fraction
        super().__init__(expression, **extra)

    def as_sql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:  # type: ignore[override]
        # The fraction is a checked float, written into the SQL as a literal.
        return super().as_sql(
            compiler, connection, fraction=repr(float(self.fraction)), **extra_context
        )

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        clone = self.copy()
        clone.function = _SQLITE_NAME
        clone.template = "%(function)s(%(expressions)s, %(fraction)s)"
        return clone.as_sql(compiler, connection, **extra_context)
