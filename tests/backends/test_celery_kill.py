"""Workers that die: SIGKILL mid roll-up, and a broker that dies mid probe round."""

import uuid
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
import redis
from django.db import connection
from django.utils import timezone

from backends import tasks
from backends.models import HealthCheck, HourlyRollup, LLMBackend
from backends.services import samples_ingest
from tests.backends.celery_workers import (
    REDIS_URL,
    ThrowawayRedis,
    WorkerProcess,
    unique_queue,
    use_broker,
    wait_until,
    worker_database_url,
)
from tests.backends.probe_servers import Knobs, probe_app
from tests.upstreams.runner import serve_in_thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queue() -> Iterator[str]:
    from athena_admin.celery import app

    name = unique_queue()
    saved = app.conf.task_default_queue
    app.conf.task_default_queue = name
    yield name
    app.conf.task_default_queue = saved


_ROLLUPS = connection.ops.quote_name(HourlyRollup._meta.db_table)


def _backend_waiting_on_the_rollup_table() -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE %s",
            [f"%INSERT INTO {_ROLLUPS}%"],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() is not None


def test_a_rollup_killed_mid_run_runs_again_elsewhere_and_counts_nothing_twice(
    make_entry, queue, tmp_path
):
    use_broker(REDIS_URL)
    entry = make_entry("phi3:mini")
    hour = (timezone.now() - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    samples_ingest(
        samples=[
            {
                "id": uuid.uuid4(),
                "entry_id": entry.pk,
                "model": "phi3:mini",
                "backend_type": "ollama",
                "endpoint_url": entry.endpoint_url,
                "started_at": hour + timedelta(minutes=i),
                "ok": i % 4 != 0,
                "latency_ms": 100.0 + i,
            }  # fmt: skip
            for i in range(40)
        ]
    )
    # Hold the roll-up table so the first worker stops inside its roll-up transaction,
    # after the watermark lock and the aggregation have started.
    locker = psycopg.connect(worker_database_url(), autocommit=False)
    locker.execute(f"LOCK TABLE {_ROLLUPS} IN SHARE ROW EXCLUSIVE MODE")
    first = WorkerProcess(broker=REDIS_URL, queue=queue, log=tmp_path / "first.log")
    try:
        first.wait_ready()
        tasks.rollup.delay()
        stuck = wait_until(_backend_waiting_on_the_rollup_table)
        first.kill()
    finally:
        first.stop()
        locker.rollback()  # release: the dead worker's session finishes, then finds no client
        locker.close()
    wait_until(lambda: not _backend_alive(stuck))
    assert HourlyRollup.objects.count() == 0  # the killed run's transaction was rolled back

    second = WorkerProcess(broker=REDIS_URL, queue=queue, log=tmp_path / "second.log")
    try:
        second.wait_ready()
        # Unacked (acks_late) and past the visibility timeout, the message is redelivered.
        wait_until(lambda: HourlyRollup.objects.exists(), timeout=60)
    finally:
        second.stop()
    row = HourlyRollup.objects.get()
    assert (row.entry_id, row.hour, row.requests, row.errors) == (entry.pk, hour, 40, 10)
    entry.refresh_from_db()
    assert (entry.total_requests, entry.total_errors) == (40, 10)
    assert b"backends.rollup" in (tmp_path / "second.log").read_bytes()
    redis.Redis.from_url(REDIS_URL).delete(queue)


def test_a_broker_dying_mid_probe_round_corrupts_nothing_and_the_next_round_recovers(
    make_entry, queue, tmp_path, settings
):
    broker = ThrowawayRedis(tmp_path)
    broker.start()
    use_broker(broker.url)
    knobs = Knobs(delay=1.5)
    worker = None
    try:
        with serve_in_thread(probe_app(knobs)) as server:
            entries = [
                make_entry(f"m{i}", endpoint_url=server.url, upstream_model="phi3:mini")
                for i in range(3)
            ]
            worker = WorkerProcess(broker=broker.url, queue=queue, log=tmp_path / "worker.log")
            worker.wait_ready()
            tasks.probe_all.delay()
            wait_until(lambda: knobs.requests)  # the round is under way
            broker.kill()
            # The round finishes without its broker; each entry gets exactly one probe.
            wait_until(lambda: HealthCheck.objects.count() == 3, timeout=30)
            for entry in entries:
                entry.refresh_from_db()
                assert (entry.health, entry.probe_successes) == ("healthy", 1)

            broker.start()  # same port: the worker reconnects
            use_broker("memory://")
            use_broker(broker.url)
            knobs.delay = 0
            tasks.probe_all.delay()
            wait_until(lambda: HealthCheck.objects.count() == 6, timeout=60)
            assert [e.probe_successes for e in LLMBackend.objects.order_by("pk")] == [2, 2, 2]
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()
        use_broker(REDIS_URL)
