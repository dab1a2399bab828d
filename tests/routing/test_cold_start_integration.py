"""A cold start end to end: the Ollama test server loads a model, the router reports the load
time in its sample, the real admin (live_server) stores it and the entry's pages show it."""

import asyncio

import pytest
from django.test import Client

from tests.upstreams import Behavior, ollama_app, serve_in_thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ollama():
    behavior = Behavior()
    with serve_in_thread(ollama_app(behavior)) as server:
        yield server.url, behavior


def test_a_cold_start_is_kept_with_its_load_time_and_shown_by_the_admin(
    live_server, ollama, settings, operator
):
    from backends import services
    from backends.models import HourlyRollup, LLMBackend, RequestSample
    from backends.probes import probe_entries
    from backends.rollups import rollup_all

    settings.ATHENA_COLD_START_MS = 200.0
    url, behavior = ollama
    _, key = services.service_key_create(name="cold start test")
    entry = services.backend_create(
        fields={
            "model_name": "llama-cold",
            "backend_type": "ollama",
            "endpoint_url": url,
            "upstream_model": "llama3.2:latest",
        }
    )

    async def calls() -> tuple[dict, bool]:
        from routing import LLMRouter

        # threshold 1: a single failure would open the circuit
        async with LLMRouter(
            live_server.url, service_key=key, metrics_interval=60, breaker_threshold=1
        ) as router:
            behavior.load_ms = 350.0  # the first call waits for the model to load
            cold = await router.generate(model="llama-cold", prompt="hi")
            behavior.load_ms = None  # then it is in memory
            async for _ in router.stream(model="llama-cold", prompt="hi"):
                pass
            return cold, await router.flush_metrics()

    cold, flushed = asyncio.run(calls())
    assert flushed and cold["backend"] == "ollama"

    samples = {s.stream: s for s in RequestSample.objects.filter(entry=entry)}
    assert samples[False].load_ms == pytest.approx(350.0)
    assert samples[False].ok and samples[False].latency_ms >= 350.0
    assert samples[True].ok and 0 < samples[True].load_ms < 200.0  # loaded: not a cold start

    entry.refresh_from_db()
    assert (entry.total_requests, entry.total_errors) == (2, 0)  # slow, but not a failure
    assert entry.last_load_ms == pytest.approx(350.0)
    assert entry.last_cold_start_at == samples[False].started_at

    rollup_all()
    (row,) = HourlyRollup.objects.filter(entry=entry)
    assert (row.requests, row.errors, row.cold_starts) == (2, 0, 1)
    assert row.avg_load_ms == pytest.approx(350.0)

    # The probe asks the same server, learns its version and never makes it load a model.
    requests_before = len(behavior.requests)
    (outcome,) = probe_entries(entry_ids=[entry.pk])
    assert outcome.health == "healthy" and outcome.observation.version == "0.6.3"
    assert len(behavior.requests) == requests_before

    browser = Client()
    browser.force_login(operator)
    listing = browser.get("/admin/backends/llmbackend/").content.decode()
    assert '<span class="last-load" title="cold start at ' in listing
    assert ">load 350 ms</span>" in listing
    change = browser.get(f"/admin/backends/llmbackend/{entry.pk}/change/").content.decode()
    assert "Last load ms" in change and "350.0" in change
    assert LLMBackend.objects.get(pk=entry.pk).health == "healthy"
