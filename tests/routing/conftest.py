"""Real servers on 127.0.0.1, started once per session; their knobs are reset before each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from routing import LLMRouter
from tests.upstreams import AdminStandIn, Behavior, admin_app, serve_in_thread
from tests.upstreams.scripted import Script, scripted_app


@pytest.fixture(scope="session")
def admin_state() -> AdminStandIn:
    return AdminStandIn()


@pytest.fixture(scope="session")
def admin_url(admin_state: AdminStandIn) -> Iterator[str]:
    app, _ = admin_app(admin_state)
    with serve_in_thread(app) as server:
        yield server.url


@pytest.fixture(scope="session")
def script() -> Script:
    return Script()


@pytest.fixture(scope="session")
def scripted_url(script: Script) -> Iterator[str]:
    """An upstream answering whatever bytes ``script`` holds (tests/upstreams/scripted.py)."""
    with serve_in_thread(scripted_app(script)) as server:
        yield server.url


@pytest.fixture(autouse=True)
def _reset(
    ollama_behavior: Behavior, openai_behavior: Behavior, admin_state: AdminStandIn, script: Script
) -> None:
    ollama_behavior.reset()
    openai_behavior.reset()
    script.reset()
    admin_state.routes.clear()
    admin_state.lookups.clear()
    admin_state.samples.clear()
    admin_state.sample_posts = 0
    admin_state.status = None
    admin_state.delay = 0.0
    admin_state.service_key = None


def target(kind: str, url: str, upstream: str, **extra: Any) -> dict[str, Any]:
    """One element of a route's ``targets``, as the admin sends it."""
    return {
        "entry_id": extra.pop("entry_id", 1),
        "model_name": extra.pop("model_name", "alias"),
        "backend_type": kind,
        "endpoint_url": url,
        "upstream_model": upstream,
        "timeout_seconds": extra.pop("timeout_seconds", 5),
        "max_tokens": extra.pop("max_tokens", 2048),
        "temperature_default": extra.pop("temperature_default", 0.7),
        "health": extra.pop("health", "unknown"),
        **extra,
    }


@pytest.fixture
async def make_router(admin_url: str) -> AsyncIterator[Callable[..., LLMRouter]]:
    """Build routers (closed after the test); defaults to the stand-in admin, fast breakers."""
    routers: list[LLMRouter] = []

    def make(admin: str | None = admin_url, **kwargs: Any) -> LLMRouter:
        kwargs.setdefault("metrics", False)
        kwargs.setdefault("connect_timeout", 1.0)
        router = LLMRouter(admin, **kwargs)
        routers.append(router)
        return router

    yield make
    for router in routers:
        await router.aclose()
