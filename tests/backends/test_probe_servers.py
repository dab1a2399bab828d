"""Probes against real local servers: what each answer does to an entry."""

from collections.abc import Iterator

import pytest

from backends.models import HealthCheck, LLMBackend
from backends.probes import probe_entries
from tests.backends.probe_servers import Knobs, probe_app
from tests.upstreams.runner import RunningServer, bind_free_socket, serve_in_thread


@pytest.fixture
def knobs() -> Knobs:
    return Knobs()


@pytest.fixture
def server(knobs: Knobs) -> Iterator[RunningServer]:
    with serve_in_thread(probe_app(knobs)) as running:
        yield running


@pytest.fixture
def fast_settings(settings):  # type: ignore[no-untyped-def]
    settings.ATHENA_PROBE_TIMEOUT_SECONDS = 1.0
    settings.ATHENA_PROBE_SLOW_MS = 300.0
    settings.ATHENA_PROBE_FAILURES_TO_DOWN = 2
    settings.ATHENA_PROBE_SUCCESSES_TO_HEALTHY = 2
    return settings


def _probe(entry: LLMBackend) -> LLMBackend:
    probe_entries(entry_ids=[entry.pk])
    entry.refresh_from_db()
    return entry


def test_a_healthy_ollama_is_healthy_with_its_model_present(make_entry, server, fast_settings):
    entry = _probe(make_entry("phi3:mini", endpoint_url=server.url))
    assert entry.health == "healthy"
    assert entry.model_present is True
    assert entry.model_loaded is False
    assert entry.health_error == ""
    assert entry.health_checked_at is not None
    check = HealthCheck.objects.get(entry=entry)
    assert check.ok and check.health == "healthy" and check.latency_ms is not None


def test_it_reads_loaded_models_from_ollama_ps(make_entry, server, knobs, fast_settings):
    knobs.models = ("llama3.2:latest",)
    knobs.loaded = ("llama3.2:latest",)
    entry = _probe(make_entry("llama3.2", endpoint_url=server.url))
    assert (entry.model_present, entry.model_loaded) == (True, True)
    assert knobs.requests == ["/api/version", "/api/tags", "/api/ps"]


def test_an_ollama_probe_asks_its_three_questions_on_one_connection(
    make_entry, server, knobs, fast_settings
):
    entry = _probe(make_entry("phi3:mini", endpoint_url=server.url))
    assert entry.health == "healthy"
    assert knobs.requests == ["/api/version", "/api/tags", "/api/ps"]  # nothing that loads
    assert len(knobs.client_ports) == 3 and len(set(knobs.client_ports)) == 1
    assert HealthCheck.objects.get(entry=entry).backend_version == "0.6.3"


@pytest.mark.parametrize("path", ["/api/version", "/api/tags"])
def test_a_failing_version_or_tags_fails_an_ollama_probe(
    make_entry, server, knobs, fast_settings, path
):
    knobs.broken = {path: 500}
    entry = _probe(make_entry("phi3:mini", endpoint_url=server.url))
    assert entry.probe_failures == 1
    assert entry.health_error == "HTTP 500"
    assert knobs.requests[-1] == path and "/api/ps" not in knobs.requests


def test_a_failing_ps_only_leaves_loaded_unknown(make_entry, server, knobs, fast_settings):
    knobs.broken = {"/api/ps": 500}
    entry = _probe(make_entry("phi3:mini", endpoint_url=server.url))
    assert (entry.health, entry.model_present, entry.model_loaded) == ("healthy", True, None)


def test_it_reads_mlx_health(make_entry, server, knobs, fast_settings):
    knobs.models = ("phi3-mini-4bit",)
    knobs.loaded = ("phi3-mini-4bit",)
    entry = make_entry("phi3:mlx", backend_type="mlx", upstream_model="phi3-mini-4bit")
    LLMBackend.objects.filter(pk=entry.pk).update(endpoint_url=server.url)
    entry = _probe(entry)
    assert (entry.health, entry.model_present, entry.model_loaded) == ("healthy", True, True)
    assert knobs.requests == ["/health"]


def test_an_auto_entry_is_probed_as_its_mlx_server(make_entry, server, knobs, fast_settings):
    knobs.models = ("phi3:mini",)
    entry = _probe(make_entry("phi3:mini", backend_type="auto", endpoint_url=server.url))
    assert entry.health == "healthy"
    assert knobs.requests == ["/health"]


def test_an_openai_server_is_asked_for_v1_models(make_entry, server, knobs, fast_settings):
    knobs.models = ("gpt-local",)
    entry = _probe(make_entry("gpt-local", backend_type="openai", endpoint_url=server.url))
    assert (entry.health, entry.model_present, entry.model_loaded) == ("healthy", True, None)
    assert knobs.requests == ["/v1/models"]


def test_a_slow_answer_is_degraded(make_entry, server, knobs, fast_settings):
    fast_settings.ATHENA_PROBE_TIMEOUT_SECONDS = 3.0  # both Ollama requests share it
    knobs.delay = 0.5
    entry = _probe(make_entry(endpoint_url=server.url))
    assert entry.health == "degraded"
    assert entry.health_error.startswith("slow:")


def test_a_missing_upstream_model_is_degraded(make_entry, server, knobs, fast_settings):
    knobs.models = ("mistral:7b",)
    entry = _probe(make_entry("phi3:mini", endpoint_url=server.url))
    assert entry.health == "degraded"
    assert entry.model_present is False
    assert entry.health_error == "model 'phi3:mini' is not on the backend"


def test_a_500_is_a_failure_and_its_body_is_not_stored(make_entry, server, knobs, fast_settings):
    knobs.status = 500
    entry = _probe(make_entry(endpoint_url=server.url))
    assert entry.health == "unknown"  # one failure is below the threshold
    assert entry.probe_failures == 1
    assert entry.health_error == "HTTP 500"
    check = HealthCheck.objects.get(entry=entry)
    assert not check.ok and "secret" not in check.error


def test_a_refused_connection_is_a_failure(make_entry, fast_settings):
    with bind_free_socket() as sock:  # a port nobody listens on once closed
        port = sock.getsockname()[1]
    entry = _probe(make_entry(endpoint_url=f"http://127.0.0.1:{port}"))
    assert entry.probe_failures == 1
    assert entry.health_error == "cannot connect"


def test_a_timeout_is_a_failure(make_entry, server, knobs, fast_settings):
    knobs.delay = 3.0
    entry = _probe(make_entry(endpoint_url=server.url))
    assert entry.probe_failures == 1
    assert entry.health_error == "timed out"


def test_redirects_are_not_followed(make_entry, server, knobs, fast_settings):
    knobs.redirect_to = "http://169.254.169.254/latest/meta-data/"
    entry = _probe(make_entry(endpoint_url=server.url))
    assert entry.probe_failures == 1
    assert entry.health_error == "HTTP 302 (redirects are not followed)"
    assert knobs.requests == ["/api/version"]


def test_entries_sharing_an_endpoint_share_one_probe(make_entry, server, knobs, fast_settings):
    a = make_entry("phi3:mini", endpoint_url=server.url)
    b = make_entry("phi3:mini-synthesis", endpoint_url=server.url, upstream_model="phi3:mini")
    probe_entries(entry_ids=[a.pk, b.pk])
    assert knobs.requests == ["/api/version", "/api/tags", "/api/ps"]
    assert set(LLMBackend.objects.values_list("health", flat=True)) == {"healthy"}


def test_one_host_is_probed_one_request_at_a_time(make_entry, server, knobs, fast_settings):
    knobs.delay = 0.05
    knobs.models = ("m", "gpt")
    make_entry("m", endpoint_url=server.url)
    make_entry("gpt", backend_type="openai", endpoint_url=server.url)
    make_entry("mlx-m", backend_type="mlx", endpoint_url=server.url + "/", upstream_model="m")
    probe_entries()
    assert sorted(knobs.requests) == [
        "/api/ps",
        "/api/tags",
        "/api/version",
        "/health",
        "/v1/models",
    ]
    assert knobs.max_in_flight == 1


def test_disabled_entries_are_left_out_of_a_round(make_entry, server, knobs, fast_settings):
    make_entry(endpoint_url=server.url, enabled=False)
    assert probe_entries() == []
    assert knobs.requests == []
