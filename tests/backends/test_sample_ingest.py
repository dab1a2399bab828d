"""POST /api/metrics/samples: samples are stored once and update the registry's counters."""

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from backends.models import RequestSample
from tests.backends.samples import sample


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
    assert response.json() == {"accepted": 3, "duplicates": 0, "rejected": 0, "errors": []}
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


def test_a_call_turned_away_at_capacity_is_kept_but_counts_as_no_request_or_error(
    client: Any, make_entry: Any
) -> None:
    entry = make_entry("m")
    batch = [
        sample(entry.pk, latency_ms=100.0),
        sample(entry.pk, ok=False, error_kind="overload", status_code=503, latency_ms=2.0),
    ]
    response = client.post("/api/metrics/samples", {"samples": batch}, format="json")
    assert response.json()["accepted"] == 2
    entry.refresh_from_db()
    assert (entry.total_requests, entry.total_errors, entry.avg_latency_ms) == (1, 0, 100.0)
    assert RequestSample.objects.filter(error_kind="overload").count() == 1


def test_a_resent_batch_counts_nothing_twice(client: Any, make_entry: Any) -> None:
    entry = make_entry("m")
    batch = {"samples": [sample(entry.pk), sample(entry.pk)]}
    client.post("/api/metrics/samples", batch, format="json")
    again = client.post("/api/metrics/samples", batch, format="json")
    assert again.json() == {"accepted": 0, "duplicates": 2, "rejected": 0, "errors": []}
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
    "body",
    [
        {"samples": []},
        {},
        {"samples": {"id": "x"}},
        {"samples": "all of them"},
        {"samples": [sample(None)] * 1001},
    ],
)
def test_a_body_that_is_not_a_batch_is_refused_whole(client: Any, body: Any) -> None:
    response = client.post("/api/metrics/samples", body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("samples")
    assert RequestSample.objects.count() == 0


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"latency_ms": -1}, "latency_ms"),
        ({"completion_tokens": -1}, "completion_tokens"),  # eval_count: -1 from an upstream
        ({"error_kind": "gremlins"}, "error_kind"),
        ({"id": "not-a-uuid"}, "id"),
        ({"started_at": "yesterday"}, "started_at"),
        ({"prompt_tokens": 2**40}, "prompt_tokens"),
    ],
)
def test_one_bad_sample_is_dropped_and_the_good_ones_are_kept(
    client: Any, make_entry: Any, bad: dict[str, Any], field: str
) -> None:
    entry = make_entry()
    batch = [sample(entry.pk) for _ in range(28)]
    batch[13] = {**batch[13], **bad}
    response = client.post("/api/metrics/samples", {"samples": batch}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (27, 0, 1)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(13, field)]
    assert body["errors"][0]["message"]
    assert RequestSample.objects.count() == 27
    entry.refresh_from_db()
    assert entry.total_requests == 27


def test_an_item_that_is_not_an_object_is_dropped_with_no_field(client: Any, db: None) -> None:
    response = client.post(
        "/api/metrics/samples", {"samples": [sample(None), 5, None, "x"]}, format="json"
    )
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 3)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, None), (2, None), (3, None)]


def test_an_id_twice_in_one_batch_counts_once(client: Any, make_entry: Any) -> None:
    entry = make_entry()
    one = sample(entry.pk)
    response = client.post("/api/metrics/samples", {"samples": [one, one]}, format="json")
    assert response.status_code == 202
    assert (response.json()["accepted"], response.json()["duplicates"]) == (1, 1)
    entry.refresh_from_db()
    assert entry.total_requests == 1


def test_rejected_samples_are_counted_in_the_admins_metrics(client: Any, db: None) -> None:
    def rejected() -> float:
        text = Client().get("/metrics").content.decode()
        line = next(
            (
                x
                for x in text.splitlines()
                if x.startswith('athena_admin_samples_rejected_total{field="latency_ms"}')
            ),
            "x 0",
        )
        return float(line.split()[-1])

    before = rejected()
    bad = {**sample(None), "latency_ms": -5}
    client.post("/api/metrics/samples", {"samples": [bad, bad, sample(None)]}, format="json")
    assert rejected() == before + 2


# --- load times and cold starts ---


def test_load_ms_is_stored_and_may_be_null_or_left_out(client: Any, make_entry: Any) -> None:
    entry = make_entry("m")
    without = sample(entry.pk)
    del without["load_ms"]  # a router from before load_ms
    batch = [sample(entry.pk, load_ms=12.5), sample(entry.pk, load_ms=None), without]
    response = client.post("/api/metrics/samples", {"samples": batch}, format="json")
    assert response.status_code == 202
    stored = {str(s.id): s.load_ms for s in RequestSample.objects.all()}
    assert stored == {batch[0]["id"]: 12.5, batch[1]["id"]: None, batch[2]["id"]: None}
    entry.refresh_from_db()
    # 12.5 ms is a loaded model's bookkeeping, not a cold start.
    assert (entry.last_load_ms, entry.last_cold_start_at) == (None, None)


def test_the_newest_cold_start_is_kept_on_the_entry(
    client: Any, make_entry: Any, settings: Any
) -> None:
    settings.ATHENA_COLD_START_MS = 1000
    entry = make_entry("m")
    now = timezone.now()
    at = [(now - timedelta(minutes=m)).isoformat() for m in (30, 20, 10)]
    client.post(
        "/api/metrics/samples",
        {
            "samples": [
                sample(entry.pk, started_at=at[0], load_ms=4000.0, latency_ms=4500.0),
                sample(entry.pk, started_at=at[1], load_ms=2500.0, latency_ms=2600.0),
                sample(entry.pk, started_at=at[2], load_ms=1000.0),  # not over the threshold
            ]
        },
        format="json",
    )
    entry.refresh_from_db()
    assert entry.last_load_ms == 2500.0
    assert entry.last_cold_start_at == datetime.fromisoformat(at[1])
    # A cold start is slow, not a failure: counted as a good call.
    assert (entry.total_requests, entry.total_errors) == (3, 0)

    # A late batch with an older cold start changes nothing; a newer one replaces it.
    older = sample(entry.pk, started_at=(now - timedelta(hours=1)).isoformat(), load_ms=9000.0)
    client.post("/api/metrics/samples", {"samples": [older]}, format="json")
    entry.refresh_from_db()
    assert (entry.last_load_ms, entry.last_cold_start_at) == (2500.0, datetime.fromisoformat(at[1]))
    newer = sample(entry.pk, started_at=now.isoformat(), load_ms=1500.0)
    client.post("/api/metrics/samples", {"samples": [newer]}, format="json")
    entry.refresh_from_db()
    assert (entry.last_load_ms, entry.last_cold_start_at) == (1500.0, now)


def test_the_cold_start_threshold_is_a_setting(client: Any, make_entry: Any, settings: Any) -> None:
    settings.ATHENA_COLD_START_MS = 50
    entry = make_entry("m")
    client.post(
        "/api/metrics/samples", {"samples": [sample(entry.pk, load_ms=60.0)]}, format="json"
    )
    entry.refresh_from_db()
    assert entry.last_load_ms == 60.0


@pytest.mark.parametrize("value", [-1, -0.001, "fast", [], {}, "NaN", "Infinity"])
def test_a_bad_load_ms_is_refused_naming_the_field(client: Any, db: None, value: Any) -> None:
    response = client.post(
        "/api/metrics/samples",
        {"samples": [sample(None), {**sample(None), "load_ms": value}]},
        format="json",
    )
    assert response.status_code == 202
    assert [e["field"] for e in response.json()["errors"]] == ["load_ms"]
    assert RequestSample.objects.count() == 1


def test_the_registry_api_shows_the_newest_cold_start_read_only(
    client: Any, make_entry: Any, api_as: Any, operator: Any
) -> None:
    entry = make_entry("m")
    started = timezone.now().replace(microsecond=0)
    cold = sample(entry.pk, started_at=started.isoformat(), load_ms=4200.0, latency_ms=4500.0)
    client.post("/api/metrics/samples", {"samples": [cold]}, format="json")

    registry = api_as(operator)
    shown = registry.get(f"/api/llm-backends/{entry.pk}").json()
    assert shown["last_load_ms"] == 4200.0
    assert datetime.fromisoformat(shown["last_cold_start_at"]) == started

    # Measured, not configured: a write to these fields changes nothing.
    registry.patch(
        f"/api/llm-backends/{entry.pk}",
        {"last_load_ms": 1.0, "last_cold_start_at": None},
        format="json",
    )
    entry.refresh_from_db()
    assert (entry.last_load_ms, entry.last_cold_start_at) == (4200.0, started)
