"""A real Celery worker runs comparisons started through the API, and stops on cancel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection

from athena_admin.celery import app
from backends import comparisons
from backends.models import ComparisonCall, ComparisonRun, ComparisonStatus
from tests.backends.celery_workers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker(comparison_queue: str) -> Iterator[None]:
    # Close each task's database connection, so the test database can be dropped after.
    saved = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = 0
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[comparison_queue]):
        yield
    connection.settings_dict["CONN_MAX_AGE"] = saved


def _status(run_id: int) -> str:
    return ComparisonRun.objects.get(pk=run_id).status


def test_a_run_started_through_the_api_is_run_by_a_worker(
    api_as: Any, operator: Any, compared: dict[str, Any], worker: None
) -> None:
    client = api_as(operator)
    started = client.post("/api/comparisons", {"model_name": "tiny", "repetitions": 1}, format="json")  # fmt: skip
    assert started.status_code == 202
    run_id = started.json()["id"]

    wait_until(lambda: _status(run_id) == ComparisonStatus.DONE, timeout=120)

    body = client.get(f"/api/comparisons/{run_id}").json()
    fastest = next(t for t in body["targets"] if t["position"] == body["fastest"])
    assert fastest["endpoint_url"] == compared["fast"].endpoint_url
    assert body["fastest_by"] == "decode_tokens_per_sec"
    dead = next(t for t in body["targets"] if t["endpoint_url"] == compared["dead"].endpoint_url)
    assert dead["unreachable"] == "cannot connect" and dead["calls"] == 0
    slow = next(t for t in body["targets"] if t["endpoint_url"] == compared["slow"].endpoint_url)
    assert slow["ratio"] > 1 and slow["calls"] == slow["ok"] == 4
    assert slow["latency_ms"]["count"] == 4 and slow["latency_ms"]["min"] <= slow["latency_ms"]["median"]  # fmt: skip


def test_cancel_stops_a_running_run_between_calls(
    api_as: Any, operator: Any, compared: dict[str, Any], slow_upstream: Any, worker: None
) -> None:
    slow_upstream.delay = 0.5
    client = api_as(operator)
    run_id = client.post("/api/comparisons", {"model_name": "tiny-slow", "repetitions": 20}, format="json").json()["id"]  # fmt: skip
    calls = ComparisonCall.objects.filter(target__run_id=run_id)
    wait_until(lambda: calls.filter(target__endpoint_url=slow_upstream_url(compared)).count() >= 2)

    assert client.post(f"/api/comparisons/{run_id}/cancel").json()["status"] == "cancelled"
    at_cancel = calls.count()

    # The worker is free again once the cancelled task has ended (one task at a time).
    other = client.post("/api/comparisons", {"model_name": "tiny", "repetitions": 1}, format="json").json()["id"]  # fmt: skip
    wait_until(lambda: _status(other) == ComparisonStatus.DONE, timeout=120)
    assert _status(run_id) == ComparisonStatus.CANCELLED
    assert calls.count() <= at_cancel + 1  # at most the call in flight when it was cancelled
    planned = 3 * (1 + 20 * 4) - 20 * 4  # three targets, the dead one only warmed up
    assert calls.count() < planned


def slow_upstream_url(compared: dict[str, Any]) -> str:
    return str(compared["slow"].endpoint_url)


def test_a_run_waits_for_the_slot_without_holding_the_worker(
    api_as: Any, operator: Any, compared: dict[str, Any], worker: None
) -> None:
    # Another worker's run holds the comparison slot.
    holder = comparisons.comparison_start(model_name="tiny-slow", repetitions=1)
    assert comparisons._claim_slot(holder)
    ComparisonRun.objects.filter(pk=holder.pk).update(status=ComparisonStatus.RUNNING)

    client = api_as(operator)
    run_id = client.post("/api/comparisons", {"model_name": "tiny", "repetitions": 1}, format="json").json()["id"]  # fmt: skip
    time.sleep(2)  # the worker has taken the task and put it back for later
    assert _status(run_id) == ComparisonStatus.QUEUED
    assert not ComparisonCall.objects.filter(target__run_id=run_id).exists()

    ComparisonRun.objects.filter(pk=holder.pk).update(status=ComparisonStatus.DONE)
    wait_until(lambda: _status(run_id) == ComparisonStatus.DONE, timeout=120)
