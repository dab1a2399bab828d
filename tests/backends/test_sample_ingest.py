"""POST /api/metrics/samples: samples are stored once and update the registry's counters."""

import uuid
from typing import Any

import pytest
from django.utils import timezone

from backends.models import RequestSample


def sample(entry_id: int | None, **fields: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "entry_id": entry_id,
        "model": "m",
        "backend_type": "ollama",
        "endpoint_url": "http://127.0.0.1:11434",
        "started_at": timezone.now().isoformat(),
        "ok": True,
        "error_kind": None,
        "status_code": 200,
        "latency_ms": 100.0,
        "ttft_ms": 10.0,
        "prompt_tokens": 5,
        "completion_tokens": 50,
        "tokens_per_sec": 50.0,
        "fallback": False,
        "stream": False,
        **fields,
    }


@pytest.fixture
def client(api_as: Any, service_key: str) -> Any:
    return api_as(service_key)


def test_samples_update_counters_and_running_averages(client: Any, make_entry: Any) -> None:
    entry = make_entry("m")
    batch = [
        sample(entry.pk, latency_ms=100.0, tokens_per_sec=40.0),
        sample(entry.pk, latency_ms=300.0, tokens_per_sec=60.0),
        sample(entry.pk, ok=False, error_kind="timeout", latency_ms=60000.0, tokens_per_sec=None),
    ]
    response = client.post("/api/metrics/samples", {"samples": batch}, format="json")
    assert response.status_code == 202
    assert response.json() == {"accepted": 3, "duplicates": 0}
    entry.refresh_from_db()
    assert (entry.total_requests, entry.total_errors) == (3, 1)
    assert entry.avg_latency_ms == pytest.approx(200.0)
    assert entry.avg_tokens_per_sec == pytest.approx(50.0)

    client.post(
        "/api/metrics/samples",
        {"samples": [sample(entry.pk, latency_ms=500.0, tokens_per_sec=80.0)]},
        format="json",
    )
    entry.refresh_from_db()
    assert entry.total_requests == 4
    assert entry.avg_latency_ms == pytest.approx((100 + 300 + 500) / 3)
    assert entry.avg_tokens_per_sec == pytest.approx((40 + 60 + 80) / 3)


def test_a_resent_batch_counts_nothing_twice(client: Any, make_entry: Any) -> None:
    entry = make_entry("m")
    batch = {"samples": [sample(entry.pk), sample(entry.pk)]}
    client.post("/api/metrics/samples", batch, format="json")
    again = client.post("/api/metrics/samples", batch, format="json")
    assert again.json() == {"accepted": 0, "duplicates": 2}
    entry.refresh_from_db()
    assert entry.total_requests == 2
    assert RequestSample.objects.count() == 2


def test_samples_for_unknown_entries_are_kept_unattributed(client: Any, db: None) -> None:
    response = client.post(
        "/api/metrics/samples", {"samples": [sample(None), sample(987654)]}, format="json"
    )
    assert response.json()["accepted"] == 2
    assert set(RequestSample.objects.values_list("entry_id", flat=True)) == {None}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"samples": []}, "samples"),
        ({}, "samples"),
        ({"samples": [{**sample(None), "latency_ms": -1}]}, "samples"),
        ({"samples": [{**sample(None), "error_kind": "gremlins"}]}, "samples"),
        ({"samples": [{**sample(None), "id": "not-a-uuid"}]}, "samples"),
        ({"samples": [sample(None)] * 1001}, "samples"),
    ],
)
def test_bad_batches_are_refused_whole(client: Any, body: Any, field: str) -> None:
    response = client.post("/api/metrics/samples", body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith(field)
    assert RequestSample.objects.count() == 0
