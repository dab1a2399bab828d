"""Pruning: samples and probe records past retention go, roll-ups and recent rows stay."""

import uuid
from datetime import timedelta

from django.utils import timezone

from backends.models import HealthCheck, HourlyRollup, RequestSample
from backends.rollups import prune_old_records, rollup_all


def _sample(entry, started_at):  # type: ignore[no-untyped-def]
    return RequestSample.objects.create(
        id=uuid.uuid4(), entry=entry, model=entry.model_name, backend_type="ollama",
        endpoint_url=entry.endpoint_url, started_at=started_at, ok=True, latency_ms=10.0,
    )  # fmt: skip


def _check(entry, checked_at):  # type: ignore[no-untyped-def]
    return HealthCheck.objects.create(
        entry=entry, checked_at=checked_at, ok=True, health="healthy", latency_ms=1.0
    )


def test_it_deletes_only_what_is_past_retention(make_entry, settings):
    settings.ATHENA_SAMPLE_RETENTION_DAYS = 7
    entry = make_entry()
    now = timezone.now()
    old = [_sample(entry, now - timedelta(days=8, minutes=i)) for i in range(5)]
    recent = _sample(entry, now - timedelta(days=6))
    _check(entry, now - timedelta(days=9))
    kept_check = _check(entry, now - timedelta(hours=1))
    HourlyRollup.objects.create(
        entry=entry, hour=now - timedelta(days=30), requests=1, errors=0, ok_requests=1,
        computed_at=now,
    )  # fmt: skip

    assert prune_old_records(batch_size=2) == (5, 1)
    assert list(RequestSample.objects.values_list("id", flat=True)) == [recent.id]
    assert list(HealthCheck.objects.values_list("id", flat=True)) == [kept_check.id]
    assert HourlyRollup.objects.count() == 1
    assert old  # deleted in three batches of at most two
    assert prune_old_records() == (0, 0)


def test_hours_past_retention_are_not_recomputed_from_what_is_left(make_entry, settings):
    settings.ATHENA_SAMPLE_RETENTION_DAYS = 7
    entry = make_entry()
    hour = (timezone.now() - timedelta(days=10)).replace(minute=0, second=0, microsecond=0)
    HourlyRollup.objects.create(
        entry=entry, hour=hour, requests=100, errors=0, ok_requests=100, computed_at=hour
    )
    _sample(entry, hour + timedelta(minutes=1))  # a straggler older than retention
    rollup_all()
    assert HourlyRollup.objects.get(entry=entry, hour=hour).requests == 100
