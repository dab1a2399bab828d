"""The router against the real Django admin (pytest-django's live_server), not the stand-in."""

import asyncio

import pytest

from tests.upstreams import Behavior, ollama_app, openai_app, serve_in_thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def upstreams():
    mlx, ollama = Behavior(), Behavior()
    with (
        serve_in_thread(openai_app(mlx)) as mlx_server,
        serve_in_thread(ollama_app(ollama)) as ollama_server,
    ):
        yield mlx_server.url, mlx, ollama_server.url, ollama


@pytest.fixture
def service_key():
    from backends import services

    _, raw = services.service_key_create(name="routing tests")
    return raw


def test_the_router_follows_the_admins_chain_and_its_samples_update_the_counters(
    live_server, service_key, upstreams
):
    from backends import services
    from backends.models import LLMBackend, RequestSample

    mlx_url, mlx, ollama_url, ollama = upstreams
    services.backend_create(
        fields={
            "model_name": "llama-ollama",
            "backend_type": "ollama",
            "endpoint_url": ollama_url,
            "upstream_model": "llama3.1:8b",
        }
    )
    entry = services.backend_create(
        fields={
            "model_name": "phi3:mini-synthesis",
            "backend_type": "mlx",
            "endpoint_url": mlx_url,
            "upstream_model": "phi3-mini-4bit",
            "temperature_default": 0.2,
        },
        fallbacks=["llama-ollama"],
    )
    fallback_entry = LLMBackend.objects.get(model_name="llama-ollama")

    async def calls() -> tuple[dict, dict]:
        from routing import LLMRouter

        async with LLMRouter(
            live_server.url, service_key=service_key, metrics_interval=60
        ) as router:
            first = await router.generate(model="phi3:mini-synthesis", prompt="hi", temperature=0)
            mlx.status = 503
            second = await router.generate(model="phi3:mini-synthesis", prompt="hi")
            assert await router.flush_metrics()
            return first, second

    first, second = asyncio.run(calls())
    assert (first["backend"], first["upstream_model"], first["entry_id"]) == (
        "mlx",
        "phi3-mini-4bit",
        entry.pk,
    )
    assert mlx.requests[0]["temperature"] == 0
    assert (second["backend"], second["upstream_model"], second["fallback"]) == (
        "ollama",
        "llama3.1:8b",
        True,
    )
    assert RequestSample.objects.count() == 3
    entry.refresh_from_db()
    fallback_entry.refresh_from_db()
    assert (entry.total_requests, entry.total_errors) == (2, 1)
    assert (fallback_entry.total_requests, fallback_entry.total_errors) == (1, 0)
    assert entry.avg_latency_ms > 0 and entry.avg_tokens_per_sec > 0


def test_the_router_revalidates_with_the_admins_etag_and_lists_routes(
    live_server, service_key, upstreams
):
    from backends import services

    _, _, ollama_url, _ = upstreams
    services.backend_create(
        fields={"model_name": "phi3:mini", "backend_type": "ollama", "endpoint_url": ollama_url}
    )

    async def calls():
        from routing import LLMRouter

        async with LLMRouter(
            live_server.url, service_key=service_key, cache_ttl=0, metrics=False
        ) as router:
            a = await router.route("phi3:mini")
            b = await router.route("phi3:mini")  # TTL 0: revalidated, the admin answers 304
            entry = router._routes._entries["phi3:mini"]
            return a, b, entry.etag, await router.routes()

    a, b, etag, routes = asyncio.run(calls())
    assert a is b and etag
    assert [r.model for r in routes] == ["phi3:mini"]
    assert routes[0].targets[0].endpoint_url == ollama_url


def test_a_wrong_service_key_is_refused(live_server, upstreams):
    from routing import LLMRouter, RouteLookupError

    async def call():
        async with LLMRouter(live_server.url, service_key="athena_bad", metrics=False) as router:
            await router.route("phi3:mini")

    with pytest.raises(RouteLookupError, match="ATHENA_SERVICE_KEY"):
        asyncio.run(call())
