"""Probes refuse endpoints outside the allowed networks at connect time, sending nothing."""

from collections.abc import Iterator

import pytest

from backends.models import HealthCheck
from backends.probes import probe_entries
from tests.backends.probe_servers import Knobs, probe_app
from tests.upstreams.runner import RunningServer, serve_in_thread


@pytest.fixture
def knobs() -> Knobs:
    return Knobs()


@pytest.fixture
def server(knobs: Knobs) -> Iterator[RunningServer]:
    with serve_in_thread(probe_app(knobs)) as running:
        yield running


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_an_endpoint_now_outside_the_allowed_networks_is_refused_and_recorded(
    make_entry, server, knobs, settings, host
):
    entry = make_entry(endpoint_url=f"http://{host}:{server.port}")
    # The registry accepted the URL; since then the operator narrowed the networks (or the
    # name now resolves elsewhere): the probe checks again when it connects.
    settings.ATHENA_ALLOWED_BACKEND_NETWORKS = ["10.0.0.0/8"]
    probe_entries()
    entry.refresh_from_db()
    assert knobs.requests == []
    assert entry.probe_failures == 1
    assert entry.health_error.startswith("refused: address ")
    assert "outside the allowed networks" in entry.health_error
    check = HealthCheck.objects.get(entry=entry)
    assert not check.ok and check.latency_ms is None


def test_a_metadata_address_is_refused_whatever_is_allowed(make_entry, settings):
    entry = make_entry(endpoint_url="http://127.0.0.1:9")
    settings.ATHENA_ALLOWED_BACKEND_NETWORKS = ["0.0.0.0/0"]
    type(entry).objects.filter(pk=entry.pk).update(endpoint_url="http://169.254.169.254")
    probe_entries()
    entry.refresh_from_db()
    assert entry.health_error.startswith("refused: address 169.254.169.254 is never allowed")


def test_a_host_that_does_not_resolve_is_refused(make_entry, settings):
    settings.ATHENA_RESOLVE_BACKEND_HOSTS = False
    entry = make_entry(endpoint_url="http://no-such-host.invalid:11434")
    probe_entries()
    entry.refresh_from_db()
    assert entry.health_error == "refused: host 'no-such-host.invalid' does not resolve"
