"""The router's Finish keeps every field a backend reported and adds where it was served."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from dataclasses import fields

import pytest

from routing import Backend, Finish, GenerationRequest, ProbeResult, StreamEvent, Target, TextDelta
from routing._backends import _REGISTRY, register_backend
from tests.routing.conftest import target

# Set by the router from the target and its own clock; every other field is the backend's.
ROUTER_FIELDS = {
    "model",
    "backend_type",
    "endpoint_url",
    "upstream_model",
    "entry_id",
    "fallback",
    "latency_ms",
    "ttft_ms",
    "tokens_per_sec",
}
# A distinct value per field (numbers, as the router computes with the durations and counts).
REPORTED = {f.name: i + 1 for i, f in enumerate(fields(Finish)) if f.name != "extra"}
REPORTED["extra"] = {"cached_tokens": 3}
# The text fields take text: the router refuses final stats of the wrong type.
REPORTED["finish_reason"] = "stop"
REPORTED["upstream_model"] = "reported-model"


class StatsBackend(Backend):
    kind = "stats-test"
    protocol = "ollama"

    async def events(
        self, target: Target, request: GenerationRequest
    ) -> AsyncGenerator[StreamEvent, None]:
        yield TextDelta("hi")
        yield Finish(**REPORTED)  # type: ignore[arg-type]

    async def probe(self, endpoint_url: str, *, timeout: float = 5.0) -> ProbeResult:
        return ProbeResult(True, 0.0)


@pytest.fixture
def stats_backend() -> Iterator[None]:
    register_backend(StatsBackend)
    yield
    del _REGISTRY[StatsBackend.kind]


async def test_every_field_the_backend_reported_reaches_the_caller(
    make_router, admin_state, stats_backend
):
    admin_state.set_route("m", target("stats-test", "http://127.0.0.1:9", "up", entry_id=7))
    router = make_router()
    request = GenerationRequest.build(model="m", prompt="hi")
    finish = [e async for e in router.events(request)][-1]
    assert isinstance(finish, Finish)
    for field in fields(Finish):
        if field.name not in ROUTER_FIELDS:
            assert getattr(finish, field.name) == REPORTED[field.name], field.name
    assert (finish.model, finish.backend_type, finish.entry_id) == ("m", "stats-test", 7)
