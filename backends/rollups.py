"""Hourly roll-ups of request samples, computed by the database, written with upserts.

One row per (entry, UTC hour): requests, errors, and over the successful calls the mean and
p95 latency, mean time to first token and mean tokens/s; and the cold starts (samples whose
load_ms exceeds ATHENA_COLD_START_MS) with their mean load time. A run recomputes every hour that
received a sample since the last run (plus an overlap), whole: the upsert replaces a row,
never adds to it, so running twice, or again after a worker died mid-run, changes nothing.

The registry's counters (`total_requests`, `total_errors`, `avg_latency_ms`,
`avg_tokens_per_sec`) have two writers. Ingest adds each new batch to them at once, so they
are live between roll-ups. Each roll-up then re-bases the entries it touched to the exact
figures summed from all their roll-up rows (requests and errors summed; the means weighted
by successful calls). A re-base assigns, it never adds, so nothing is counted twice: a batch
ingested while a roll-up runs is at worst missing from the figures until the next run.
Roll-up rows are kept when samples are pruned (24 small rows per entry per day), so the
totals stay lifetime figures.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from backends.models import HealthCheck, HourlyRollup, LLMBackend, RequestSample, RollupWatermark

__all__ = ["prune_old_records", "rollup_all", "rollup_recent"]

# Samples can arrive late (a router re-sends a batch) and an ingest transaction can commit
# after a roll-up read the clock: every run looks back this far past its watermark.
OVERLAP = timedelta(minutes=5)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

_COLUMNS = (
    "entry_id, hour, requests, errors, ok_requests, avg_latency_ms, p95_latency_ms, "
    "avg_ttft_ms, tps_samples, avg_tokens_per_sec, cold_starts, avg_load_ms, computed_at"
)
_UPSERT = """
    ON CONFLICT (entry_id, hour) DO UPDATE SET
        requests = excluded.requests, errors = excluded.errors,
        ok_requests = excluded.ok_requests, avg_latency_ms = excluded.avg_latency_ms,
        p95_latency_ms = excluded.p95_latency_ms, avg_ttft_ms = excluded.avg_ttft_ms,
        tps_samples = excluded.tps_samples, avg_tokens_per_sec = excluded.avg_tokens_per_sec,
        cold_starts = excluded.cold_starts, avg_load_ms = excluded.avg_load_ms,
        computed_at = excluded.computed_at
    RETURNING entry_id
"""


def _table(model: type[Any]) -> str:
    """The model's table, quoted: raw SQL never spells a table name by hand."""
    return str(connection.ops.quote_name(model._meta.db_table))


def _hour(column: str) -> str:
    if connection.vendor == "postgresql":
        return f"date_trunc('hour', {column})"  # the connection's time zone is UTC
    return f"strftime('%%Y-%%m-%%d %%H:00:00', {column})"  # SQLite stores UTC text


def _scope(since: datetime | None) -> tuple[str, str, str]:
    """(WITH clause, JOIN clause, WHERE clause) selecting the samples of the hours to redo."""
    # Calls turned away at capacity are no requests the backend served or failed.
    served = "s.error_kind <> 'overload'"
    if since is None:
        return "", "", f"s.entry_id IS NOT NULL AND s.started_at >= %(oldest)s AND {served}"
    touched = f"""
        touched AS (
            SELECT DISTINCT entry_id, {_hour("started_at")} AS hour
            FROM {_table(RequestSample)}
            WHERE received_at >= %(since)s AND entry_id IS NOT NULL
              AND started_at >= %(oldest)s
        ),"""
    join = f"JOIN touched t ON t.entry_id = s.entry_id AND t.hour = {_hour('s.started_at')}"
    # The lower bound lets the (entry, started_at) index skip hours nobody touched.
    where = f"s.started_at >= (SELECT min(hour) FROM touched) AND {served}"
    return touched, join, where


def _sql_percentile_cont(since: datetime | None) -> str:
    """PostgreSQL: one aggregation, p95 by percentile_cont (linear interpolation)."""
    with_clause, join, where = _scope(since)
    return f"""
        WITH {with_clause.strip().rstrip(",") or "unused AS (SELECT 1)"}
        INSERT INTO {_table(HourlyRollup)} ({_COLUMNS})
        SELECT s.entry_id, {_hour("s.started_at")},
            count(*), count(*) FILTER (WHERE NOT s.ok), count(*) FILTER (WHERE s.ok),
            avg(s.latency_ms) FILTER (WHERE s.ok),
            percentile_cont(0.95) WITHIN GROUP (ORDER BY s.latency_ms) FILTER (WHERE s.ok),
            avg(s.ttft_ms) FILTER (WHERE s.ok),
            count(s.tokens_per_sec) FILTER (WHERE s.ok),
            avg(s.tokens_per_sec) FILTER (WHERE s.ok),
            count(*) FILTER (WHERE s.load_ms > %(cold_ms)s),
            avg(s.load_ms) FILTER (WHERE s.load_ms > %(cold_ms)s),
            %(now)s
        FROM {_table(RequestSample)} s {join}
        WHERE {where}
        GROUP BY s.entry_id, {_hour("s.started_at")}
        {_UPSERT}
    """


def _sql_window(since: datetime | None) -> str:
    """Any database with window functions (SQLite): the same figures, p95 by ranking.

    percentile_cont(0.95) over n sorted values v[0..n-1] is v[lo] + f * (v[lo+1] - v[lo])
    with pos = 0.95 * (n - 1), lo = floor(pos), f = pos - lo. Integer division gives the
    floor in both SQLite and PostgreSQL (a CAST would round in PostgreSQL).
    """
    with_clause, join, where = _scope(since)
    return f"""
        WITH {with_clause}
        picked AS (
            SELECT s.entry_id AS entry_id, {_hour("s.started_at")} AS hour, s.ok AS ok,
                   s.latency_ms AS latency_ms, s.ttft_ms AS ttft_ms, s.tokens_per_sec AS tps,
                   s.load_ms AS load_ms
            FROM {_table(RequestSample)} s {join}
            WHERE {where}
        ),
        ranked AS (
            SELECT picked.*,
                CASE WHEN ok THEN row_number() OVER (
                    PARTITION BY entry_id, hour, ok ORDER BY latency_ms) - 1 END AS i,
                CASE WHEN ok THEN (95 * (count(*) OVER (
                    PARTITION BY entry_id, hour, ok) - 1)) / 100 END AS lo,
                CASE WHEN ok THEN (95 * (count(*) OVER (
                    PARTITION BY entry_id, hour, ok) - 1)) %% 100 / 100.0 END AS frac
            FROM picked
        ),
        grouped AS (
            SELECT entry_id, hour, count(*) AS requests,
                sum(CASE WHEN ok THEN 0 ELSE 1 END) AS errors,
                sum(CASE WHEN ok THEN 1 ELSE 0 END) AS ok_requests,
                avg(CASE WHEN ok THEN latency_ms END) AS avg_latency_ms,
                max(CASE WHEN i = lo THEN latency_ms END) AS v_lo,
                max(CASE WHEN i = lo + 1 THEN latency_ms END) AS v_hi,
                max(frac) AS frac,
                avg(CASE WHEN ok THEN ttft_ms END) AS avg_ttft_ms,
                count(CASE WHEN ok THEN tps END) AS tps_samples,
                avg(CASE WHEN ok THEN tps END) AS avg_tps,
                sum(CASE WHEN load_ms > %(cold_ms)s THEN 1 ELSE 0 END) AS cold_starts,
                avg(CASE WHEN load_ms > %(cold_ms)s THEN load_ms END) AS avg_load_ms
            FROM ranked GROUP BY entry_id, hour
        )
        INSERT INTO {_table(HourlyRollup)} ({_COLUMNS})
        SELECT entry_id, hour, requests, errors, ok_requests, avg_latency_ms,
            v_lo + frac * (coalesce(v_hi, v_lo) - v_lo),
            avg_ttft_ms, tps_samples, avg_tps, cold_starts, avg_load_ms, %(now)s
        FROM grouped WHERE true
        {_UPSERT}
    """


def _sql_rebase(entry_ids: str) -> str:
    """Set the touched entries' counters to the sums of all their roll-up rows."""
    entries, rollups = _table(LLMBackend), _table(HourlyRollup)
    return f"""
        UPDATE {entries} SET
            total_requests = r.requests, total_errors = r.errors,
            avg_latency_ms = r.latency, avg_tokens_per_sec = r.tps
        FROM (
            SELECT entry_id, sum(requests) AS requests, sum(errors) AS errors,
                sum(avg_latency_ms * ok_requests) / nullif(sum(ok_requests), 0) AS latency,
                sum(avg_tokens_per_sec * tps_samples) / nullif(sum(tps_samples), 0) AS tps
            FROM {rollups} WHERE entry_id IN ({entry_ids}) GROUP BY entry_id
        ) r
        WHERE {entries}.id = r.entry_id
    """


def _run(since: datetime | None, *, method: str | None = None) -> set[int]:
    now = timezone.now()
    oldest = now - timedelta(days=settings.ATHENA_SAMPLE_RETENTION_DAYS)
    if method is None:
        method = "percentile_cont" if connection.vendor == "postgresql" else "window"
    build = _sql_percentile_cont if method == "percentile_cont" else _sql_window
    adapt = connection.ops.adapt_datetimefield_value
    params = {
        "now": adapt(now),
        "oldest": adapt(oldest),
        "since": adapt(since),
        "cold_ms": float(settings.ATHENA_COLD_START_MS),
    }
    with connection.cursor() as cursor:
        cursor.execute(build(since), params)
        entry_ids = {row[0] for row in cursor.fetchall()}
        if entry_ids:
            ids = ", ".join(str(int(i)) for i in sorted(entry_ids))
            cursor.execute(_sql_rebase(ids))
    return entry_ids


def rollup_recent(*, method: str | None = None) -> int:
    """Recompute the hours that received samples since the last run; return entries touched."""
    with transaction.atomic():
        # The row lock makes concurrent runs take turns instead of racing the watermark.
        mark, _ = RollupWatermark.objects.select_for_update().get_or_create(
            name="samples", defaults={"received_before": _EPOCH}
        )
        started = timezone.now()
        touched = _run(mark.received_before - OVERLAP, method=method)
        RollupWatermark.objects.filter(name="samples").update(received_before=started)
    return len(touched)


def rollup_all(*, method: str | None = None) -> int:
    """Recompute every retained hour of every entry (a backfill); return entries touched."""
    with transaction.atomic():
        return len(_run(None, method=method))


def prune_old_records(*, batch_size: int = 10_000) -> tuple[int, int]:
    """Delete samples and probe records past retention, in batches; return (samples, probes).

    Roll-up rows are kept: they are what the totals and the long-range charts read.
    """
    cutoff = timezone.now() - timedelta(days=settings.ATHENA_SAMPLE_RETENTION_DAYS)
    counts = []
    for model, field in ((RequestSample, "started_at"), (HealthCheck, "checked_at")):
        total = 0
        while True:
            # Short batches keep each DELETE's locks and WAL small on a busy table.
            ids: list[Any] = list(
                model.objects.filter(**{f"{field}__lt": cutoff}).values_list("pk", flat=True)[
                    :batch_size
                ]
            )
            if not ids:
                break
            total += model.objects.filter(pk__in=ids).delete()[0]
        counts.append(total)
    return counts[0], counts[1]
