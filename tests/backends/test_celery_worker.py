"""A real worker on the real Redis runs what beat schedules, end to end."""

import importlib
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from django.apps import apps
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from athena_admin.celery import app
from backends import tasks
from backends.models import HealthCheck, HourlyRollup, LLMBackend, RequestSample
from backends.services import samples_ingest
from tests.backends.celery_workers import REDIS_URL, unique_queue, use_broker, wait_until
from tests.backends.probe_servers import Knobs, probe_app
from tests.upstreams.runner import RunningServer, serve_in_thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queue() -> Iterator[str]:
    """Point the app at the shared Redis with a queue of this test's own."""
    name = unique_queue()
    use_broker(REDIS_URL)
    saved = app.conf.task_default_queue
    app.conf.task_default_queue = name
    yield name
    app.conf.task_default_queue = saved
    redis.Redis.from_url(REDIS_URL).delete(name)


@pytest.fixture
def worker(queue: str) -> Iterator[None]:
    # Close each task's database connection, so the test database can be dropped after.
    saved = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = 0
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue]):
        yield
    connection.settings_dict["CONN_MAX_AGE"] = saved


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with serve_in_thread(probe_app(Knobs())) as running:
        yield running


def _beat_sends(*task_names: str) -> None:
    """Send due entries the way beat does: DatabaseScheduler reads the rows, applies them."""
    importlib.import_module("backends.migrations.0004_beat_schedule").create_schedule(apps, None)
    scheduler = DatabaseScheduler(app=app)
    # Built from the rows directly: the scheduler only loads crontab rows near their hour.
    for row in PeriodicTask.objects.filter(task__in=task_names):
        scheduler.apply_async(scheduler.Entry(row, app=app), advance=False)


def test_scheduled_probe_rollup_and_prune_run_on_a_worker(make_entry, server, worker, settings):
    entry = make_entry("phi3:mini", endpoint_url=server.url)
    hour = (timezone.now() - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    fresh = {
        "id": uuid.uuid4(), "entry_id": entry.pk, "model": "phi3:mini", "backend_type": "ollama",
        "endpoint_url": server.url, "started_at": hour, "ok": True, "latency_ms": 120.0,
    }  # fmt: skip
    stale = {**fresh, "id": uuid.uuid4(), "started_at": timezone.now() - timedelta(days=90)}
    samples_ingest(samples=[fresh, stale])

    _beat_sends("backends.probe_all", "backends.rollup", "backends.prune")

    wait_until(lambda: HealthCheck.objects.filter(entry=entry).exists())
    wait_until(lambda: HourlyRollup.objects.filter(entry=entry, hour=hour).exists())
    wait_until(lambda: RequestSample.objects.count() == 1)
    entry.refresh_from_db()
    assert entry.health == "healthy"
    # Re-based by the roll-up: the 90-day-old sample is past retention, in no roll-up.
    assert (entry.total_requests, entry.avg_latency_ms) == (1, 120.0)


def test_probe_now_runs_in_the_background_by_id(make_entry, server, worker):
    entry = make_entry("phi3:mini", endpoint_url=server.url)
    tasks.probe_entries.delay([entry.pk])
    wait_until(lambda: LLMBackend.objects.get(pk=entry.pk).health == "healthy")


def test_the_admins_probe_now_action_reaches_a_worker(make_entry, server, worker, operator):
    from django.test import Client

    entry = make_entry("phi3:mini", endpoint_url=server.url)
    client = Client()
    client.force_login(operator)
    response = client.post(
        "/admin/backends/llmbackend/", {"action": "probe_now", "_selected_action": [entry.pk]}
    )
    assert response.status_code == 302
    wait_until(lambda: LLMBackend.objects.get(pk=entry.pk).health == "healthy")
    assert HealthCheck.objects.filter(entry=entry).count() == 1


def test_probe_rounds_expire_instead_of_piling_up_while_no_worker_runs(make_entry, server, queue):
    entry = make_entry("phi3:mini", endpoint_url=server.url)
    for _ in range(5):  # five missed beats, sent as beat sends them but already stale
        tasks.probe_all.apply_async(expires=timezone.now() + timedelta(milliseconds=300))
    broker = redis.Redis.from_url(REDIS_URL)
    assert broker.llen(queue) == 5
    time.sleep(0.5)  # they are all past their expiry now
    saved = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = 0
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue]):
        wait_until(lambda: broker.llen(queue) == 0)
        tasks.probe_entries.delay([entry.pk])  # a fresh task behind them still runs
        wait_until(lambda: HealthCheck.objects.filter(entry=entry).exists())
    connection.settings_dict["CONN_MAX_AGE"] = saved
    assert HealthCheck.objects.filter(entry=entry).count() == 1
