"""The admin: last check and error on the list, "probe now", charts on the change page."""

import re
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from backends.models import HealthCheck, HourlyRollup, LLMBackend


def _client(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def test_the_list_shows_last_check_and_last_error(make_entry, operator):
    entry = make_entry()
    LLMBackend.objects.filter(pk=entry.pk).update(
        health="down", health_checked_at=timezone.now(), health_error="HTTP 503"
    )
    page = _client(operator).get("/admin/backends/llmbackend/").content.decode()
    assert '<small class="last-error">HTTP 503</small>' in page
    assert re.search(r'class="health-badge down" title="checked [0-9: -]+ UTC: HTTP 503"', page)


def test_probe_now_queues_a_probe_task_on_commit_and_says_so(
    make_entry, operator, django_capture_on_commit_callbacks
):
    entry = make_entry("phi3:mini", endpoint_url="http://127.0.0.1:9")
    with django_capture_on_commit_callbacks() as callbacks:
        response = _client(operator).post(
            "/admin/backends/llmbackend/",
            {"action": "probe_now", "_selected_action": [entry.pk]},
            follow=True,
        )
    assert "Probe queued for 1 backend(s)" in response.content.decode()
    assert len(callbacks) == 1  # the task is sent once the request's transaction commits
    assert not HealthCheck.objects.exists()  # nothing was probed inside the request


def test_a_viewer_cannot_probe(make_entry, viewer):
    entry = make_entry()
    response = _client(viewer).post(
        "/admin/backends/llmbackend/", {"action": "probe_now", "_selected_action": [entry.pk]}
    )
    assert response.status_code in (200, 302, 403)
    assert not HealthCheck.objects.exists()


def test_the_change_page_draws_latency_tokens_and_health(make_entry, operator):
    entry = make_entry()
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    for h, (p95, tps) in enumerate([(120.0, 40.0), (150.0, 35.0), (90.0, 60.0)]):
        HourlyRollup.objects.create(
            entry=entry, hour=hour - timedelta(hours=h), requests=10, errors=0, ok_requests=10,
            avg_latency_ms=p95 / 2, p95_latency_ms=p95, tps_samples=10, avg_tokens_per_sec=tps,
            computed_at=hour,
        )  # fmt: skip
    HealthCheck.objects.create(entry=entry, checked_at=hour, ok=False, health="down")
    page = _client(operator).get(f"/admin/backends/llmbackend/{entry.pk}/change/").content
    html = page.decode()
    assert html.count('<svg role="img"') == 6  # latency, tokens/s, health; for 24 h and for 7 days
    assert "p95 latency, last 24 hours (max 150 ms)" in html
    assert "Tokens/s, last 7 days (max 60 tok/s)" in html
    assert 'data-state="down"' in html  # its hover text says what the probe saw
    assert ": down (1 probe, 1 failed)</title>" in html
