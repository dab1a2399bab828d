"""POST /api/comparisons, GET /api/comparisons[/{id}], POST /api/comparisons/{id}/cancel."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from backends.api.comparisons import (
    ComparisonRunSerializer,
    SpreadSerializer,
    TargetResultSerializer,
)
from backends.comparisons import comparison_run
from backends.models import ComparisonRun, ComparisonStatus
from tests.backends.celery_workers import REDIS_URL

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("comparison_queue")]


@pytest.fixture
def entries(make_entry: Any) -> None:
    make_entry("tiny", backend_type="mlx", endpoint_url="http://127.0.0.1:9")
    make_entry("tiny-ollama", endpoint_url="http://127.0.0.1:9", upstream_model="tiny")


def test_an_operator_starts_a_run_that_is_enqueued_once_committed(
    api_as: Any, operator: Any, entries: None, comparison_queue: str
) -> None:
    response = api_as(operator).post(
        "/api/comparisons", {"model_name": "tiny", "repetitions": 2}, format="json"
    )
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert body["url"].endswith(f"/api/comparisons/{body['id']}")
    run = ComparisonRun.objects.get(pk=body["id"])
    assert (run.model_name, run.repetitions, run.created_by) == ("tiny", 2, operator)
    assert [t.model_name for t in run.targets.order_by("position")] == ["tiny", "tiny-ollama"]
    assert redis.Redis.from_url(REDIS_URL).llen(comparison_queue) == 1


def test_a_viewer_reads_runs_but_cannot_start_or_cancel_one(
    api_as: Any, viewer: Any, operator: Any, entries: None
) -> None:
    client = api_as(viewer)
    refused = client.post("/api/comparisons", {"model_name": "tiny"}, format="json")
    assert refused.status_code == 403
    assert not ComparisonRun.objects.exists()

    run_id = api_as(operator).post("/api/comparisons", {"model_name": "tiny"}, format="json").json()["id"]  # fmt: skip
    client.force_authenticate(viewer)
    assert client.post(f"/api/comparisons/{run_id}/cancel").status_code == 403
    assert ComparisonRun.objects.get(pk=run_id).status == ComparisonStatus.QUEUED
    listed = client.get("/api/comparisons?model=tiny")
    assert listed.status_code == 200 and [r["id"] for r in listed.json()] == [run_id]
    one = client.get(f"/api/comparisons/{run_id}").json()
    assert one["status"] == "queued" and [t["position"] for t in one["targets"]] == [1, 2]


def test_a_service_key_may_read_but_not_start(api_as: Any, service_key: str, entries: None) -> None:
    client = api_as(service_key)
    assert client.get("/api/comparisons").status_code == 200
    assert client.post("/api/comparisons", {"model_name": "tiny"}, format="json").status_code == 403


def test_nobody_signed_in_gets_401(api: Any, entries: None) -> None:
    assert api.get("/api/comparisons").status_code == 401
    assert api.post("/api/comparisons", {"model_name": "tiny"}, format="json").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model_name": "no-such-model"}, "model_name"),
        ({"model_name": "bad//name"}, "model_name"),
        ({}, "model_name"),
        ({"model_name": 5}, "model_name"),
        ({"model_name": "tiny", "repetitions": 0}, "repetitions"),
        ({"model_name": "tiny", "repetitions": 21}, "repetitions"),
        ({"model_name": "tiny", "repetitions": "3"}, "repetitions"),
        ({"model_name": "tiny", "repetitions": 2.5}, "repetitions"),
        ({"model_name": "tiny", "max_seconds": 5}, "max_seconds"),
        ({"model_name": "tiny", "max_seconds": 10**6}, "max_seconds"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    api_as: Any, operator: Any, entries: None, body: dict[str, Any], field: str
) -> None:
    response = api_as(operator).post("/api/comparisons", body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith(field)
    assert not ComparisonRun.objects.exists()


def test_a_second_run_while_one_is_in_progress_is_a_409(
    api_as: Any, operator: Any, entries: None
) -> None:
    client = api_as(operator)
    first = client.post("/api/comparisons", {"model_name": "tiny"}, format="json").json()["id"]
    second = client.post("/api/comparisons", {"model_name": "tiny"}, format="json")
    assert second.status_code == 409
    assert f"(run {first})" in second.json()["detail"]
    assert ComparisonRun.objects.count() == 1


def test_cancel_ends_a_queued_run_so_the_task_sends_nothing(
    api_as: Any, operator: Any, entries: None
) -> None:
    client = api_as(operator)
    run_id = client.post("/api/comparisons", {"model_name": "tiny"}, format="json").json()["id"]
    cancelled = client.post(f"/api/comparisons/{run_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["detail"] == "Cancelled by olivia."

    assert comparison_run(run_id=run_id) == ComparisonStatus.CANCELLED  # the task, later
    assert not ComparisonRun.objects.get(pk=run_id).targets.filter(calls__isnull=False).exists()
    again = client.post(f"/api/comparisons/{run_id}/cancel")
    assert again.status_code == 409 and "already ended (cancelled)" in again.json()["detail"]


def test_an_unknown_run_is_a_404(api_as: Any, operator: Any) -> None:
    assert api_as(operator).get("/api/comparisons/999999").status_code == 404
    assert api_as(operator).post("/api/comparisons/999999/cancel").status_code == 404


def test_a_run_body_has_exactly_the_documented_fields(
    api_as: Any, operator: Any, entries: None
) -> None:
    client = api_as(operator)
    run_id = client.post("/api/comparisons", {"model_name": "tiny"}, format="json").json()["id"]
    body = client.get(f"/api/comparisons/{run_id}").json()
    assert set(body) == set(ComparisonRunSerializer().fields)
    assert set(body["targets"][0]) == set(TargetResultSerializer().fields)
    assert set(body["targets"][0]["ttft_ms"]) == set(SpreadSerializer().fields)
