"""A health change made by a probe reaches routers: the route's ETag changes with it."""

from collections.abc import Iterator

import pytest

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


def test_a_probe_changes_the_routes_health_and_etag(
    make_entry, server, knobs, api_as, service_key, settings
):
    settings.ATHENA_PROBE_FAILURES_TO_DOWN = 1
    make_entry("phi3:mini", endpoint_url=server.url)
    client = api_as(service_key)
    before = client.get("/api/route/phi3:mini")
    assert before.json()["targets"][0]["health"] == "unknown"
    etag = before["ETag"]
    assert client.get("/api/route/phi3:mini", HTTP_IF_NONE_MATCH=etag).status_code == 304

    knobs.status = 500
    probe_entries()
    after = client.get("/api/route/phi3:mini", HTTP_IF_NONE_MATCH=etag)
    assert after.status_code == 200
    assert after.json()["targets"][0]["health"] == "down"
    assert after["ETag"] != etag

    # A probe that changes nothing a router sees keeps the ETag: routers keep their cache.
    probe_entries()
    again = client.get("/api/route/phi3:mini", HTTP_IF_NONE_MATCH=after["ETag"])
    assert again.status_code == 304
