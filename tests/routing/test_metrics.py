"""Call samples reach the admin in batches, off the request path."""

import asyncio
import time
import uuid

from tests.routing.conftest import target

SAMPLE_KEYS = [
    "id",
    "entry_id",
    "model",
    "backend_type",
    "endpoint_url",
    "started_at",
    "ok",
    "error_kind",
    "status_code",
    "latency_ms",
    "ttft_ms",
    "load_ms",
    "prompt_tokens",
    "completion_tokens",
    "tokens_per_sec",
    "fallback",
    "stream",
]


async def test_each_attempt_becomes_a_sample_in_the_contracts_shape(
    make_router, admin_state, openai_url, ollama_url, openai_behavior
):
    admin_state.service_key = "key"
    admin_state.set_route(
        "m",
        target("mlx", openai_url, "a", entry_id=3),
        target("ollama", ollama_url, "b", entry_id=4),
    )
    router = make_router(service_key="key", metrics=True, metrics_interval=0.05)
    openai_behavior.status = 503
    await router.generate(model="m", prompt="hi")
    openai_behavior.status = 200
    async for _ in router.stream(model="m", prompt="hi"):
        pass
    for _ in range(100):
        if len(admin_state.samples) == 3:
            break
        await asyncio.sleep(0.02)
    failed, served, streamed = sorted(
        admin_state.samples.values(), key=lambda s: (s["started_at"], s["ok"])
    )
    for sample in (failed, served, streamed):
        assert list(sample) == SAMPLE_KEYS
        uuid.UUID(sample["id"])
        assert sample["started_at"].endswith("Z") and sample["model"] == "m"
    assert (failed["ok"], failed["error_kind"], failed["status_code"], failed["entry_id"]) == (
        False,
        "http_5xx",
        503,
        3,
    )
    assert (served["ok"], served["fallback"], served["entry_id"], served["completion_tokens"]) == (
        True,
        True,
        4,
        4,
    )
    assert streamed["stream"] is True and streamed["ttft_ms"] > 0 and streamed["tokens_per_sec"] > 0
    # Only Ollama reports a load time (its load_duration); the OpenAI protocol has none.
    assert served["load_ms"] > 0
    assert failed["load_ms"] is None and streamed["load_ms"] is None


async def test_a_target_at_capacity_ships_an_overload_sample(
    make_router, admin_state, openai_url, ollama_url, openai_behavior
):
    admin_state.service_key = "key"
    admin_state.set_route(
        "m",
        target("mlx", openai_url, "a", entry_id=3),
        target("ollama", ollama_url, "b", entry_id=4),
    )
    router = make_router(service_key="key", metrics=True, metrics_interval=0.05)
    openai_behavior.status = 429  # at capacity: the router moves on to the next target
    await router.generate(model="m", prompt="hi")
    for _ in range(100):
        if len(admin_state.samples) == 2:
            break
        await asyncio.sleep(0.02)
    turned_away = next(s for s in admin_state.samples.values() if s["entry_id"] == 3)
    assert list(turned_away) == SAMPLE_KEYS
    assert (turned_away["ok"], turned_away["error_kind"], turned_away["status_code"]) == (
        False,
        "overload",
        429,
    )


async def test_a_dead_admin_does_not_slow_calls(make_router, tmp_path, ollama_url, dead_url):
    routes = tmp_path / "r.json"
    routes.write_text(
        f'{{"routes": [{{"model": "m", "targets": [{{"backend_type": "ollama", "endpoint_url": "{ollama_url}"}}]}}]}}'
    )
    router = make_router(
        dead_url, routes_file=routes, metrics=True, metrics_interval=0.01, metrics_batch=1
    )
    started = time.perf_counter()
    for _ in range(50):
        await router.generate(model="m", prompt="hi")
    assert time.perf_counter() - started < 1.0
    assert router._session().metrics.buffered > 0  # kept for when the admin is back


async def test_a_hanging_admin_does_not_slow_calls(
    make_router, admin_state, tmp_path, ollama_url, admin_url
):
    routes = tmp_path / "r.json"
    routes.write_text(
        f'{{"routes": [{{"model": "m", "targets": [{{"backend_type": "ollama", "endpoint_url": "{ollama_url}"}}]}}]}}'
    )
    admin_state.delay = 3.0
    router = make_router(
        admin_url, routes_file=routes, metrics=True, metrics_interval=0.01, metrics_batch=1
    )
    started = time.perf_counter()
    for _ in range(20):
        await router.generate(model="m", prompt="hi")
    assert time.perf_counter() - started < 1.0


async def test_a_full_buffer_drops_the_oldest_and_counts_them(
    make_router, tmp_path, ollama_url, dead_url
):
    routes = tmp_path / "r.json"
    routes.write_text(
        f'{{"routes": [{{"model": "m", "targets": [{{"backend_type": "ollama", "endpoint_url": "{ollama_url}"}}]}}]}}'
    )
    router = make_router(
        dead_url, routes_file=routes, metrics=True, metrics_buffer=5, metrics_interval=60
    )
    for i in range(8):
        await router.generate(model="m", prompt=f"p{i}")
    assert router.metrics_dropped == 3 and router._session().metrics.buffered == 5


async def test_a_batch_resent_after_an_outage_keeps_its_ids(
    make_router, admin_state, tmp_path, ollama_url, admin_url
):
    routes = tmp_path / "r.json"
    routes.write_text(
        f'{{"routes": [{{"model": "m", "targets": [{{"backend_type": "ollama", "endpoint_url": "{ollama_url}"}}]}}]}}'
    )
    router = make_router(
        admin_url, routes_file=routes, metrics=True, metrics_interval=60, metrics_batch=1000
    )
    for _ in range(4):
        await router.generate(model="m", prompt="hi")
    admin_state.status = 503
    assert await router.flush_metrics() is False
    pending_ids = [s["id"] for s in router._session().metrics._pending]
    await router.generate(model="m", prompt="later")
    admin_state.status = None
    assert await router.flush_metrics() is True
    assert set(pending_ids) <= set(admin_state.samples) and len(admin_state.samples) == 5


async def test_aclose_flushes_what_is_buffered(
    make_router, admin_state, tmp_path, ollama_url, admin_url
):
    routes = tmp_path / "r.json"
    routes.write_text(
        f'{{"routes": [{{"model": "m", "targets": [{{"backend_type": "ollama", "endpoint_url": "{ollama_url}"}}]}}]}}'
    )
    router = make_router(admin_url, routes_file=routes, metrics=True, metrics_interval=60)
    await router.generate(model="m", prompt="hi")
    await router.aclose()
    assert (
        len(admin_state.samples) == 1 and list(admin_state.samples.values())[0]["entry_id"] is None
    )
