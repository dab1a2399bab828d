"""Percentile: the database's percentile_cont, and the same figure on SQLite."""

import math
import sqlite3
import statistics
import uuid
from typing import Any

import pytest
from django.db.models import Q
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from backends.aggregates import Percentile, _SqlitePercentile, percentile_cont
from backends.models import RequestSample

latencies = st.lists(st.floats(0, 1e6, allow_nan=False), min_size=2, max_size=50)


@given(latencies, st.integers(1, 99))
def test_it_interpolates_as_percentile_cont_does(values: list[float], k: int) -> None:
    expected = statistics.quantiles(values, n=100, method="inclusive")[k - 1]
    assert math.isclose(percentile_cont(values, k / 100), expected, rel_tol=1e-9, abs_tol=1e-6)


@given(latencies, st.sampled_from([0.5, 0.95]))
def test_sqlite_computes_the_same_figure(values: list[float], fraction: float) -> None:
    db = sqlite3.connect(":memory:")
    db.create_aggregate("athena_percentile_cont", 2, _SqlitePercentile)
    db.execute("CREATE TABLE s (v REAL)")
    db.executemany("INSERT INTO s VALUES (?)", [(v,) for v in [*values, None]])
    (got,) = db.execute("SELECT athena_percentile_cont(v, ?) FROM s", (fraction,)).fetchone()
    assert math.isclose(got, percentile_cont(values, fraction), rel_tol=1e-9, abs_tol=1e-6)


def test_the_database_agrees_and_honours_the_filter(db: None) -> None:
    now = timezone.now()
    for i, (latency, ok) in enumerate([(100, True), (200, True), (300, True), (5000, False)]):
        RequestSample.objects.create(
            id=uuid.uuid4(), model="m", backend_type="ollama", endpoint_url="http://x",
            started_at=now, ok=ok, latency_ms=float(latency), ttft_ms=None if i == 0 else 10.0 * i,
        )  # fmt: skip
    figures: dict[str, Any] = RequestSample.objects.aggregate(
        p95=Percentile("latency_ms", 0.95, filter=Q(ok=True)),
        p50=Percentile("latency_ms", 0.5),
        ttft=Percentile("ttft_ms", 0.5),  # nulls left out, as percentile_cont does
        none=Percentile("latency_ms", 0.5, filter=Q(ok=True, latency_ms__gt=1e9)),
    )
    assert figures == {"p95": pytest.approx(290.0), "p50": 250.0, "ttft": 20.0, "none": None}


def test_a_fraction_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="fraction"):
        Percentile("latency_ms", 95)
