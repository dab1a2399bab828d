"""Roll-ups against hand-computed figures: idempotent, replacing, re-basing the counters."""

import random
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from backends.models import HourlyRollup, LLMBackend
from backends.rollups import rollup_all, rollup_recent
from backends.services import samples_ingest

HOUR = (timezone.now() - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)


def sample(entry: LLMBackend | None, at: timedelta, ok: bool = True, **fields: Any) -> dict:
    return {
        "id": uuid.uuid4(),
        "entry_id": entry.pk if entry else None,
        "model": entry.model_name if entry else "local",
        "backend_type": "ollama",
        "endpoint_url": "http://127.0.0.1:11434",
        "started_at": HOUR + at,
        "ok": ok,
        "error_kind": "" if ok else "http_5xx",
        "status_code": 200 if ok else 500,
        "latency_ms": fields.pop("latency_ms", 100.0),
        **fields,
    }


@pytest.fixture
def two_entries(make_entry) -> tuple[LLMBackend, LLMBackend]:
    a, b = make_entry("alpha"), make_entry("beta")
    m = timedelta(minutes=1)
    samples_ingest(
        samples=[
            sample(a, 1 * m, latency_ms=300.0, ttft_ms=30.0, tokens_per_sec=None),
            sample(a, 2 * m, latency_ms=100.0, ttft_ms=10.0, tokens_per_sec=50.0),
            sample(a, 3 * m, latency_ms=400.0, ttft_ms=40.0, tokens_per_sec=70.0),
            sample(a, 59 * m, latency_ms=200.0, ttft_ms=20.0, tokens_per_sec=60.0),
            sample(a, 30 * m, ok=False, latency_ms=5000.0),
            # Turned away at capacity: in no figure below (not a call the backend served).
            sample(a, 31 * m, ok=False, latency_ms=2.0, error_kind="overload", status_code=503),
            sample(a, 61 * m, latency_ms=1000.0, ttft_ms=None, tokens_per_sec=10.0),
            sample(b, 5 * m, ok=False, latency_ms=10.0),
            sample(b, 6 * m, ok=False, latency_ms=20.0),
            sample(None, 7 * m, latency_ms=1.0),  # unattributed: in no roll-up
        ]
    )
    return a, b


def figures(entry: LLMBackend) -> list[tuple]:
    """The entry's roll-up rows, floats rounded so sums in another order compare equal."""
    return [
        tuple(
            round(v, 6) if isinstance(v, float) else v
            for v in (
                r.hour,
                r.requests,
                r.errors,
                r.ok_requests,
                r.avg_latency_ms,
                r.p95_latency_ms,
                r.avg_ttft_ms,
                r.tps_samples,
                r.avg_tokens_per_sec,
                r.cold_starts,
                r.avg_load_ms,
            )
        )  # fmt: skip
        for r in HourlyRollup.objects.filter(entry=entry).order_by("hour")
    ]


EXPECTED_A = [
    # p95 of 100, 200, 300, 400: pos = 0.95 * 3 = 2.85 -> 300 + 0.85 * (400 - 300) = 385
    (HOUR, 5, 1, 4, 250.0, 385.0, 25.0, 3, 60.0, 0, None),
    (HOUR + timedelta(hours=1), 1, 0, 1, 1000.0, 1000.0, None, 1, 10.0, 0, None),
]
EXPECTED_B = [(HOUR, 2, 2, 0, None, None, None, 0, None, 0, None)]


@pytest.mark.parametrize("method", ["percentile_cont", "window"])
def test_it_matches_hand_computed_figures(two_entries, method):
    a, b = two_entries
    assert rollup_recent(method=method) == 2
    assert figures(a) == EXPECTED_A
    assert figures(b) == EXPECTED_B


def test_it_rebases_the_counters_to_exact_figures(two_entries):
    a, b = two_entries
    rollup_recent()
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.total_requests, a.total_errors) == (6, 1)
    # Means over successful calls, weighted: (250 * 4 + 1000) / 5 and (60 * 3 + 10) / 4.
    assert a.avg_latency_ms == pytest.approx(400.0)
    assert a.avg_tokens_per_sec == pytest.approx(47.5)
    assert (b.total_requests, b.total_errors, b.avg_latency_ms) == (2, 2, None)


def test_running_it_again_changes_nothing(two_entries):
    a, _ = two_entries
    rollup_recent()
    counters = LLMBackend.objects.order_by("pk").values_list("total_requests", "total_errors")
    first = figures(a), list(counters)
    rollup_recent()
    rollup_all()
    rollup_recent()
    assert (figures(a), list(counters)) == first
    assert HourlyRollup.objects.count() == 3


def test_a_late_sample_replaces_its_hour_instead_of_adding(two_entries):
    a, _ = two_entries
    rollup_recent()
    samples_ingest(samples=[sample(a, timedelta(minutes=10), latency_ms=500.0)])
    a.refresh_from_db()
    assert a.total_requests == 7  # ingest keeps the counter live between roll-ups
    rollup_recent()
    row = HourlyRollup.objects.get(entry=a, hour=HOUR)
    assert (row.requests, row.ok_requests, row.avg_latency_ms) == (6, 5, 300.0)
    a.refresh_from_db()
    assert (a.total_requests, a.total_errors) == (7, 1)  # not 13: the roll-up assigns


@pytest.mark.parametrize("seed", [1, 2])
def test_the_window_fallback_equals_percentile_cont(make_entry, seed):
    rng = random.Random(seed)
    entries = [make_entry(f"m{i}") for i in range(4)]
    batch = []
    for entry in entries:
        for hour in range(3):
            for _ in range(rng.choice([1, 2, 3, 20, 97])):
                at = timedelta(hours=hour, seconds=rng.randrange(3600))
                load = rng.choice([None, 5.0, rng.random() * 3000])
                batch.append(
                    sample(
                        entry,
                        at,
                        ok=rng.random() > 0.1,
                        latency_ms=rng.random() * 900,
                        load_ms=load,
                    )
                )
    samples_ingest(samples=batch)
    rollup_all(method="percentile_cont")
    exact = {e.pk: figures(e) for e in entries}
    HourlyRollup.objects.all().delete()
    rollup_all(method="window")
    for entry in entries:
        assert figures(entry) == exact[entry.pk]


@pytest.mark.parametrize("method", ["percentile_cont", "window"])
def test_cold_starts_and_their_mean_load_time_by_hand(make_entry, settings, method):
    settings.ATHENA_COLD_START_MS = 1000
    c = make_entry("gamma")
    m = timedelta(minutes=1)
    samples_ingest(
        samples=[
            sample(c, 1 * m, latency_ms=3500.0, load_ms=3000.0),
            sample(c, 2 * m, latency_ms=1800.0, load_ms=1500.0),
            sample(c, 3 * m, latency_ms=1200.0, load_ms=1000.0),  # not over: warm
            sample(c, 4 * m, latency_ms=100.0, load_ms=5.0),
            sample(c, 5 * m, latency_ms=100.0),  # an OpenAI-protocol call: no load_ms
            sample(c, 61 * m, latency_ms=2300.0, load_ms=2000.0),
        ]
    )
    rollup_all(method=method)
    rows = [(r[0], r[1], r[2], r[-2], r[-1]) for r in figures(c)]
    # hour 1: cold starts 3000 and 1500 -> 2, mean 2250; hour 2: one of 2000.
    assert rows == [
        (HOUR, 5, 0, 2, 2250.0),
        (HOUR + timedelta(hours=1), 1, 0, 1, 2000.0),
    ]
    c.refresh_from_db()
    # The newest cold start's load time is on the entry; cold starts are not errors.
    assert (c.last_load_ms, c.last_cold_start_at) == (2000.0, HOUR + 61 * m)
    assert (c.total_requests, c.total_errors) == (6, 0)

    settings.ATHENA_COLD_START_MS = 2500  # a stricter threshold, recomputed whole
    rollup_all(method=method)
    rows = [(r[0], r[-2], r[-1]) for r in figures(c)]
    assert rows == [(HOUR, 1, 3000.0), (HOUR + timedelta(hours=1), 0, None)]
