"""The route cache: TTL, single flight, ETag revalidation, stale-on-error, defaults, routes files."""

import asyncio
import logging

import pytest

from routing import ModelNotConfigured, RouteLookupError
from tests.routing.conftest import target


async def test_a_route_is_looked_up_once_per_ttl_and_revalidated_with_its_etag(
    make_router, admin_state, ollama_url
):
    admin_state.set_route("m", target("ollama", ollama_url, "a"))
    router = make_router(cache_ttl=0.2)
    for _ in range(5):
        await router.generate(model="m", prompt="hi")
    assert len(admin_state.lookups) == 1 and admin_state.lookups[0][1] is None
    await asyncio.sleep(0.25)
    await router.generate(model="m", prompt="hi")
    assert (
        len(admin_state.lookups) == 2 and admin_state.lookups[1][1] is not None
    )  # If-None-Match sent


async def test_a_changed_route_is_picked_up_after_the_ttl(
    make_router, admin_state, ollama_url, openai_url
):
    admin_state.set_route("m", target("ollama", ollama_url, "a"))
    router = make_router(cache_ttl=0.1)
    assert (await router.generate(model="m", prompt="hi"))["backend"] == "ollama"
    admin_state.set_route("m", target("openai", openai_url, "b"))
    await asyncio.sleep(0.15)
    assert (await router.generate(model="m", prompt="hi"))["backend"] == "openai"


async def test_a_hundred_concurrent_misses_make_one_admin_call(
    make_router, admin_state, ollama_url
):
    admin_state.set_route("m", target("ollama", ollama_url, "a"))
    admin_state.delay = 0.1
    router = make_router()
    routes = await asyncio.gather(*(router.route("m") for _ in range(100)))
    assert len(admin_state.lookups) == 1 and router.admin_lookups == 1
    assert all(r is routes[0] for r in routes)


async def test_a_down_admin_keeps_serving_the_last_known_chain(
    make_router, admin_state, openai_url, caplog
):
    admin_state.set_route("m", target("mlx", openai_url, "mlx-model"))
    router = make_router(cache_ttl=0.05)
    assert (await router.generate(model="m", prompt="hi"))["backend"] == "mlx"
    admin_state.status = 503
    caplog.set_level(logging.WARNING, logger="routing")
    for _ in range(3):
        await asyncio.sleep(0.06)
        assert (await router.generate(model="m", prompt="hi"))[
            "backend"
        ] == "mlx"  # not rerouted to Ollama
    assert "serving the last-known chain for 'm'" in caplog.text
    assert caplog.text.count("last-known chain") == 1  # logged once per outage, not per call


async def test_an_unreachable_admin_keeps_serving_the_last_known_chain(
    make_router, openai_url, tmp_path
):
    from tests.upstreams import admin_app, serve_in_thread

    app, state = admin_app()
    state.set_route("m", target("mlx", openai_url, "mlx-model"))
    server = serve_in_thread(app)
    router = make_router(server.url, cache_ttl=0.05)
    await router.generate(model="m", prompt="hi")
    server.stop()
    await asyncio.sleep(0.06)
    result = await router.generate(model="m", prompt="hi")
    assert result["backend"] == "mlx" and result["upstream_model"] == "mlx-model"


async def test_a_down_admin_and_a_model_never_seen_uses_the_default_ollama(
    make_router, dead_url, ollama_url, ollama_behavior
):
    router = make_router(dead_url, default_ollama_url=ollama_url)
    result = await router.generate(model="llama3.2", prompt="hi")
    assert result["backend"] == "ollama" and ollama_behavior.requests[0]["model"] == "llama3.2"


async def test_a_down_admin_and_a_cold_cache_raise_when_defaults_are_off(make_router, dead_url):
    with pytest.raises(RouteLookupError, match="admin is unavailable"):
        await make_router(dead_url, use_default_route=False).generate(model="m", prompt="hi")


async def test_a_404_from_the_admin_routes_to_the_default_ollama(
    make_router, admin_state, ollama_url, ollama_behavior
):
    result = await make_router(default_ollama_url=ollama_url).generate(
        model="phi3:mini", prompt="hi"
    )
    assert result["backend"] == "ollama" and result["upstream_model"] == "phi3:mini"
    assert result["entry_id"] is None


async def test_a_404_raises_model_not_configured_when_defaults_are_off(make_router, admin_state):
    router = make_router(use_default_route=False)
    with pytest.raises(ModelNotConfigured, match="No backend configured for model 'nope'"):
        await router.generate(model="nope", prompt="hi")
    with pytest.raises(ModelNotConfigured):  # cached: no second look-up
        await router.generate(model="nope", prompt="hi")
    assert len(admin_state.lookups) == 1


async def test_the_service_key_is_sent_and_a_rejected_key_is_a_clear_error(
    make_router, admin_state, ollama_url
):
    admin_state.service_key = "s3cret"
    admin_state.set_route("m", target("ollama", ollama_url, "a"))
    assert (await make_router(service_key="s3cret").generate(model="m", prompt="hi"))["done"]
    with pytest.raises(RouteLookupError, match="ATHENA_SERVICE_KEY"):
        await make_router(service_key="wrong").generate(model="m", prompt="hi")


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
async def test_a_routes_file_runs_a_service_with_no_admin(
    suffix, make_router, tmp_path, ollama_url, ollama_behavior
):
    path = tmp_path / f"routes{suffix}"
    if suffix == ".json":
        path.write_text(
            f'{{"routes": [{{"model": "fast", "targets": [{{"backend_type": "ollama", "endpoint_url": "{ollama_url}", "upstream_model": "phi3:mini", "temperature_default": 0}}]}}]}}'
        )
    else:
        path.write_text(
            f"routes:\n- model: fast\n  targets:\n  - backend_type: ollama\n    endpoint_url: {ollama_url}\n    upstream_model: phi3:mini\n    temperature_default: 0\n"
        )
    router = make_router(None, routes_file=path)
    result = await router.generate(model="fast", prompt="hi")
    assert result["upstream_model"] == "phi3:mini"
    assert ollama_behavior.requests[0]["options"]["temperature"] == 0  # a default of 0 stays 0
    with pytest.raises(ModelNotConfigured, match="not in the routes file and no admin"):
        await router.generate(model="unknown", prompt="hi")
