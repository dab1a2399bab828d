"""State transitions: down after N failures in a row, back after M successes, applied once."""

from collections.abc import Iterator

import pytest
from django.utils import timezone

from backends.models import HealthCheck, LLMBackend
from backends.probes import Observation, _apply, next_health, probe_entries
from tests.backends.probe_servers import Knobs, probe_app
from tests.upstreams.runner import RunningServer, serve_in_thread


@pytest.fixture
def knobs() -> Knobs:
    return Knobs()


@pytest.fixture
def server(knobs: Knobs) -> Iterator[RunningServer]:
    with serve_in_thread(probe_app(knobs)) as running:
        yield running


@pytest.fixture(autouse=True)
def thresholds(settings):  # type: ignore[no-untyped-def]
    settings.ATHENA_PROBE_TIMEOUT_SECONDS = 2.0
    settings.ATHENA_PROBE_FAILURES_TO_DOWN = 3
    settings.ATHENA_PROBE_SUCCESSES_TO_HEALTHY = 2


@pytest.mark.parametrize(
    ("current", "failures", "successes", "ok", "degraded", "expected"),
    [
        ("unknown", 0, 0, True, False, ("healthy", 0, 1)),
        ("unknown", 0, 0, True, True, ("degraded", 0, 1)),
        ("healthy", 0, 5, False, False, ("healthy", 1, 0)),
        ("healthy", 2, 0, False, False, ("down", 3, 0)),
        ("down", 7, 0, True, False, ("down", 0, 1)),
        ("down", 0, 1, True, False, ("healthy", 0, 2)),
        ("down", 0, 1, True, True, ("degraded", 0, 2)),
        ("degraded", 0, 3, True, False, ("healthy", 0, 4)),
    ],
)
def test_next_health_follows_the_thresholds(current, failures, successes, ok, degraded, expected):
    assert next_health(current, failures, successes, ok=ok, degraded=degraded) == expected


def _state(entry: LLMBackend) -> tuple[str, int, int]:
    entry.refresh_from_db()
    return entry.health, entry.probe_failures, entry.probe_successes


def test_an_entry_goes_down_after_three_failures_and_back_after_two_successes(
    make_entry, server, knobs
):
    entry = make_entry(endpoint_url=server.url)
    probe_entries()
    assert _state(entry) == ("healthy", 0, 1)
    knobs.status = 503
    seen = []
    for _ in range(3):
        probe_entries()
        seen.append(_state(entry))
    assert seen == [("healthy", 1, 0), ("healthy", 2, 0), ("down", 3, 0)]
    knobs.status = 200
    probe_entries()
    assert _state(entry) == ("down", 0, 1)
    probe_entries()
    assert _state(entry) == ("healthy", 0, 2)
    history = list(HealthCheck.objects.filter(entry=entry).order_by("checked_at", "pk"))
    assert [c.health for c in history] == ["healthy"] * 3 + ["down"] * 2 + ["healthy"]


def test_applying_a_round_twice_changes_nothing(make_entry, server, knobs):
    entry = make_entry(endpoint_url=server.url)
    knobs.status = 500
    probe_entries(round_id="round-1")
    probe_entries(round_id="round-1")  # a redelivered task: same round id
    assert _state(entry) == ("unknown", 1, 0)
    assert HealthCheck.objects.filter(entry=entry).count() == 1
    probe_entries(round_id="round-2")
    assert _state(entry) == ("unknown", 2, 0)


def test_a_state_change_is_conditional_on_the_state_it_was_computed_from(make_entry, server):
    entry = make_entry(endpoint_url=server.url)
    # Another writer moved the entry after the probe read it: the probe re-reads and
    # applies its observation on top, instead of overwriting.
    stale = LLMBackend.objects.get(pk=entry.pk)
    LLMBackend.objects.filter(pk=entry.pk).update(health="down", probe_failures=4)
    seen = Observation(True, 5.0, models=("phi3:mini",))
    outcome = _apply(stale, seen, "r", timezone.now(), [])
    assert outcome.health == "down"
    assert _state(entry) == ("down", 0, 1)
