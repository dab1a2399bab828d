"""GET /metrics on a live gateway: what a user checks after real requests through it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from athena_admin.gateway import GatewayConfig, create_app
from athena_admin.gateway.metrics import GatewayMetrics
from tests.ops.conftest import scrape, series, value

pytestmark = pytest.mark.django_db(transaction=True)


def test_requests_latency_ttft_and_tokens_per_second_are_counted(gateway, auth, entry, ollama_url):
    phi = entry("phi", "ollama", ollama_url)
    before = scrape(gateway)
    with httpx.Client(base_url=gateway, headers=auth, timeout=10) as client:
        for _ in range(3):
            assert client.post("/api/generate", json={"model": "phi", "prompt": "hi", "stream": False}).status_code == 200  # fmt: skip
        with client.stream("POST", "/v1/chat/completions", json={"model": "phi", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:  # fmt: skip
            assert r.status_code == 200
            r.read()
    after = scrape(gateway)

    ok = {"endpoint": "/api/generate", "model": "phi", "protocol": "ollama", "status_class": "2xx"}
    assert value(after, "athena_gateway_requests_total", **ok) == 3
    assert value(before, "athena_gateway_requests_total", **ok) == 0
    upstream = {"model": "phi", "backend_type": "ollama"}
    entry_labels = {**upstream, "entry": str(phi.pk)}
    assert value(after, "athena_upstream_requests_total", **entry_labels) == 4
    assert value(after, "athena_upstream_latency_seconds_count", **upstream) == 4
    # Every observation falls in the +Inf bucket; the buckets are cumulative.
    assert value(after, "athena_upstream_latency_seconds_bucket", **upstream, le="+Inf") == 4
    assert value(after, "athena_upstream_latency_seconds_bucket", **upstream, le="120.0") == 4
    assert value(after, "athena_upstream_ttft_seconds_count", **upstream) >= 1  # the stream
    assert value(after, "athena_upstream_tokens_per_second_count", **upstream) == 4
    assert value(after, "athena_upstream_completion_tokens_total", **upstream) > 0
    assert value(after, "athena_upstream_errors_total", **entry_labels, error_kind="connect") == 0
    # The router's route cache: phi was fetched from the admin moments ago.
    assert 0 <= value(after, "athena_router_route_age_seconds", model="phi") < 60
    assert value(after, "athena_router_routes_cached") >= 1
    assert value(after, "athena_router_admin_lookups_total") >= 1

    with httpx.Client(base_url=gateway, headers=auth, timeout=10) as client:
        client.post("/api/generate", json={"model": "phi", "prompt": "hi", "stream": False})
    assert value(scrape(gateway), "athena_gateway_requests_total", **ok) == 4


def test_a_fallback_and_the_failed_attempt_are_counted(gateway, auth, entry, ollama_url, dead_url):
    backup = entry("backup", "ollama", ollama_url)
    primary = entry("phi", "mlx", dead_url, fallbacks=["backup"])
    response = httpx.post(
        f"{gateway}/api/generate",
        json={"model": "phi", "prompt": "hi", "stream": False},
        headers=auth,
        timeout=10,
    )
    assert response.status_code == 200
    samples = scrape(gateway)
    failed = {"model": "phi", "backend_type": "mlx", "entry": str(primary.pk)}
    served = {"model": "phi", "backend_type": "ollama", "entry": str(backup.pk)}
    assert value(samples, "athena_upstream_errors_total", **failed, error_kind="connect") == 1
    assert value(samples, "athena_fallbacks_total", **served) == 1
    assert value(samples, "athena_upstream_requests_total", **failed) == 1
    assert value(samples, "athena_upstream_requests_total", **served) == 1


async def _ask_for_unknown_models(gateway: str, auth: dict[str, str], n: int) -> set[int]:
    limit = asyncio.Semaphore(16)

    async def ask(client: httpx.AsyncClient, i: int) -> int:
        async with limit:
            body = {"model": f"nobody-{i}", "prompt": "hi", "stream": False}
            return (await client.post("/api/generate", json=body)).status_code

    async with httpx.AsyncClient(base_url=gateway, headers=auth, timeout=30) as client:
        return set(await asyncio.gather(*(ask(client, i) for i in range(n))))


def test_a_thousand_unknown_models_share_one_label(gateway, auth, entry, ollama_url):
    entry("phi", "ollama", ollama_url)
    assert asyncio.run(_ask_for_unknown_models(gateway, auth, 1000)) == {404}
    body = {"model": "phi", "prompt": "hi", "stream": False}
    assert httpx.post(f"{gateway}/api/generate", json=body, headers=auth).status_code == 200

    samples = scrape(gateway)
    labels = series(samples, "athena_gateway_requests_total")
    assert {s["model"] for s in labels} <= {"phi", "other", "none"}
    assert len(labels) < 10
    assert value(samples, "athena_gateway_requests_total", endpoint="/api/generate", model="other", protocol="ollama", status_class="4xx") == 1000  # fmt: skip
    assert value(samples, "athena_gateway_requests_total", endpoint="/api/generate", model="phi", protocol="ollama", status_class="2xx") == 1  # fmt: skip
    assert len(series(samples, "athena_router_route_age_seconds")) == 1  # phi's only


def test_known_models_beyond_the_cap_are_counted_as_other():
    class Router:
        admin_lookups = metrics_dropped = metrics_buffered = 0

        def has_route(self, model: str) -> bool:
            return True

        def route_ages(self) -> dict[str, float]:
            return {f"m{i}": float(i) for i in range(10)}

    metrics = GatewayMetrics(lambda: Router(), max_models=3)  # type: ignore[arg-type, return-value]
    for i in range(10):
        metrics.observe_sample({"model": f"m{i}", "backend_type": "ollama", "entry_id": i, "ok": True, "latency_ms": 5.0})  # fmt: skip
    text = metrics.render().decode()
    assert {f'model="m{i}"' in text for i in range(3)} == {True}
    assert 'model="m3"' not in text
    assert 'athena_upstream_latency_seconds_count{backend_type="ollama",model="other"} 7.0' in text
    # Route ages: the capped models by name, the rest as the oldest of them.
    assert 'athena_router_route_age_seconds{model="m2"} 2.0' in text
    assert 'athena_router_route_age_seconds{model="other"} 9.0' in text


def _app(**config):
    return create_app(GatewayConfig(admin_url=None, routes_file=None, **config))


async def _get_metrics(app, client_host: str, headers=None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(client_host, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        return await client.get("/metrics", headers=headers)


async def test_a_scrape_from_another_host_without_a_key_is_refused(service_key):
    app = _app()
    refused = await _get_metrics(app, "203.0.113.7")
    assert refused.status_code == 401
    assert "athena_" not in refused.text
    bad_key = await _get_metrics(app, "203.0.113.7", {"Authorization": "Bearer athk_nope_nope"})
    assert bad_key.status_code == 401
    with_key = await _get_metrics(app, "203.0.113.7", {"Authorization": f"Bearer {service_key}"})
    assert with_key.status_code == 200
    assert "athena_gateway_requests_total" in with_key.text
    assert (await _get_metrics(app, "127.0.0.1")).status_code == 200
    assert (await _get_metrics(app, "::1")).status_code == 200


async def test_public_metrics_answer_any_host():
    response = await _get_metrics(_app(metrics_public=True), "203.0.113.7")
    assert response.status_code == 200
    assert "# TYPE athena_gateway_requests_total counter" in response.text
