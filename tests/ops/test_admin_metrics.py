"""GET /metrics on a live admin: each entry's health and probes, read from the database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from io import StringIO

import httpx
import pytest
from django.core.management import call_command
from django.test import Client

from tests.backends.probe_servers import Knobs, probe_app
from tests.ops.conftest import scrape, value
from tests.upstreams.runner import RunningServer, serve_in_thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def probe_server() -> Iterator[RunningServer]:
    with serve_in_thread(probe_app(Knobs())) as running:
        yield running


def _probe() -> None:
    call_command("probe_backends", "--timeout", "2", stdout=StringIO())


def test_probed_entries_show_their_health_state_and_probe_results(live_server, make_entry, probe_server):  # fmt: skip
    alive = make_entry("phi3:mini", endpoint_url=probe_server.url)
    dead = make_entry("gone:1b", endpoint_url="http://127.0.0.1:9")
    before = scrape(live_server.url)
    alive_labels = {"entry_id": str(alive.pk), "model": "phi3:mini", "backend_type": "ollama"}
    dead_labels = {"entry_id": str(dead.pk), "model": "gone:1b", "backend_type": "ollama"}
    assert value(before, "athena_backend_health", **alive_labels, state="unknown") == 1
    assert value(before, "athena_backend_probes_last_hour", **alive_labels, result="ok") == 0

    for _ in range(3):  # ATHENA_PROBE_FAILURES_TO_DOWN failures make the dead one `down`
        _probe()
    after = scrape(live_server.url)
    assert value(after, "athena_admin_database_up") == 1
    assert value(after, "athena_backend_health", **alive_labels, state="healthy") == 1
    assert value(after, "athena_backend_health", **alive_labels, state="unknown") == 0
    assert value(after, "athena_backend_health", **dead_labels, state="down") == 1
    assert value(after, "athena_backend_last_probe_ok", **alive_labels) == 1
    assert value(after, "athena_backend_last_probe_ok", **dead_labels) == 0
    assert value(after, "athena_backend_probe_consecutive_failures", **dead_labels) == 3
    assert value(after, "athena_backend_probes_last_hour", **alive_labels, result="ok") == 3
    assert value(after, "athena_backend_probes_last_hour", **dead_labels, result="error") == 3
    assert value(after, "athena_backend_probe_latency_seconds", **alive_labels) > 0
    assert value(after, "athena_backend_last_probe_timestamp_seconds", **alive_labels) > 0


def test_reported_request_totals_are_exported(live_server, make_entry, service_key):
    entry = make_entry("phi3:mini")
    sample = {
        "entry_id": entry.pk,
        "model": "phi3:mini",
        "backend_type": "ollama",
        "endpoint_url": "http://127.0.0.1:11434",
        "started_at": "2026-11-25T22:00:00.123Z",
        "latency_ms": 100.0,
        "status_code": None,
    }
    samples = [
        {**sample, "id": str(uuid.uuid4()), "ok": True, "status_code": 200},
        {**sample, "id": str(uuid.uuid4()), "ok": False, "error_kind": "timeout"},
    ]
    response = httpx.post(
        f"{live_server.url}/api/metrics/samples",
        json={"samples": samples},
        headers={"Authorization": f"Bearer {service_key}"},
    )
    assert response.status_code == 202, response.text
    labels = {"entry_id": str(entry.pk), "model": "phi3:mini", "backend_type": "ollama"}
    after = scrape(live_server.url)
    assert value(after, "athena_backend_requests_total", **labels) == 2
    assert value(after, "athena_backend_errors_total", **labels) == 1


def test_a_scrape_from_another_host_needs_a_service_key(db, service_key, settings):
    stranger = Client(REMOTE_ADDR="203.0.113.7")
    refused = stranger.get("/metrics")
    assert refused.status_code == 401
    assert b"athena_" not in refused.content
    assert stranger.get("/metrics", HTTP_AUTHORIZATION="Bearer athk_nope_nope").status_code == 401
    assert stranger.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {service_key}").status_code == 200
    assert stranger.get("/metrics", HTTP_X_API_KEY=service_key).status_code == 200
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    settings.ATHENA_METRICS_PUBLIC = True
    assert stranger.get("/metrics").status_code == 200
