"""Celery tasks: thin interfaces that take ids and call one service each.

Every task is safe to run twice: a probe round is keyed by its task id (a redelivered round
changes nothing), roll-ups replace whole hours, pruning deletes what is already gone. So
all of them ack late: a worker that dies mid-task leaves the message for another worker.
"""

from typing import Any

from celery import shared_task
from django.db import DatabaseError

from backends import comparisons, probes, rollups


@shared_task(
    name="backends.probe_all",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    # Beat sends one every 30 s: a round that waited longer than this is stale, drop it
    # rather than let rounds pile up while the workers are down.
    expires=25,
    soft_time_limit=20,
    time_limit=25,
    ignore_result=True,
)
def probe_all(self: Any) -> int:
    """Probe every enabled entry once; the task id names the round."""
    return len(probes.probe_entries(round_id=self.request.id))


@shared_task(
    name="backends.probe_entries",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    expires=60,
    soft_time_limit=20,
    time_limit=25,
    ignore_result=True,
)
def probe_entries(self: Any, entry_ids: list[int]) -> int:
    """Probe the given entries now (the admin's "probe now" when it runs in the background)."""
    return len(probes.probe_entries(entry_ids=entry_ids, round_id=self.request.id))


@shared_task(
    name="backends.rollup",
    acks_late=True,
    reject_on_worker_lost=True,
    expires=55,
    soft_time_limit=100,
    time_limit=120,
    autoretry_for=(DatabaseError,),
    retry_backoff=5,
    retry_backoff_max=60,
    max_retries=5,
    ignore_result=True,
)
def rollup() -> int:
    """Recompute the hourly roll-ups that new samples touched."""
    return rollups.rollup_recent()


@shared_task(
    name="backends.prune",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=1500,
    time_limit=1800,
    autoretry_for=(DatabaseError,),
    retry_backoff=60,
    max_retries=3,
    ignore_result=True,
)
def prune() -> tuple[int, int]:
    """Delete samples and probe records older than ATHENA_SAMPLE_RETENTION_DAYS."""
    return rollups.prune_old_records()


@shared_task(
    name="backends.compare_backends",
    # Not acks_late: running a comparison twice would double the traffic it sends. A run whose
    # worker dies is marked failed later (comparisons_expire_stale), never re-run.
    acks_late=False,
    # Per-run limits are given when it is enqueued (its max_seconds plus a margin); these
    # cover the longest run the settings allow.
    soft_time_limit=3630,
    time_limit=3660,
    ignore_result=True,
    bind=True,
)
def compare_backends(self: Any, run_id: int) -> str:
    """Run one backend comparison (backends/comparisons.py) to its end, limit or cancel."""
    status = comparisons.comparison_run(run_id=run_id)
    if status == comparisons.BUSY:
        # Another run holds the comparison slot: wait for it without holding a worker.
        # The run fails by itself once it has waited its own max_seconds.
        raise self.retry(countdown=5, max_retries=None)
    return status
