"""While the admin is down, /api/tags and /v1/models list the models the gateway still serves.

They answered 503 though the router kept serving its cached routes through the outage.
"""

from __future__ import annotations

import httpx
import pytest

from athena_admin.gateway import GatewayConfig
from tests.gateway.conftest import serve_gateway
from tests.upstreams.admin import AdminStandIn, admin_app
from tests.upstreams.runner import serve_in_thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin() -> tuple[str, AdminStandIn]:
    state = AdminStandIn()
    app, _ = admin_app(state)
    with serve_in_thread(app) as server:
        yield server.url, state


def _gateway(admin_url: str, service_key: str):  # type: ignore[no-untyped-def]
    # Models lists cached for no time at all: every list asks the admin.
    config = GatewayConfig(admin_url=admin_url, service_key=service_key, models_cache_seconds=0)
    return serve_gateway(config)


def test_a_model_used_before_the_outage_is_still_listed(admin, service_key, ollama_url):
    admin_url, state = admin
    state.set_route("phi", {"backend_type": "ollama", "endpoint_url": ollama_url, "upstream_model": "phi"})  # fmt: skip
    server = _gateway(admin_url, service_key)
    try:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": service_key}, timeout=15) as http:  # fmt: skip
            served = http.post("/api/generate", json={"model": "phi", "prompt": "hi", "stream": False})  # fmt: skip
            assert served.status_code == 200
            state.status = 503  # the admin goes down
            tags = http.get("/api/tags")
            assert tags.status_code == 200, tags.text
            assert [m["name"] for m in tags.json()["models"]] == ["phi"]
            models = http.get("/v1/models")
            assert models.status_code == 200, models.text
            assert [m["id"] for m in models.json()["data"]] == ["phi"]
            # and the model itself is still served from the cache
            again = http.post("/api/generate", json={"model": "phi", "prompt": "hi", "stream": False})  # fmt: skip
            assert again.status_code == 200
    finally:
        server.stop()


def test_a_list_from_before_the_outage_is_served_again(admin, service_key, ollama_url):
    admin_url, state = admin
    state.set_route("a", {"backend_type": "ollama", "endpoint_url": ollama_url})
    state.set_route("b", {"backend_type": "ollama", "endpoint_url": ollama_url})
    server = _gateway(admin_url, service_key)
    try:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": service_key}, timeout=15) as http:  # fmt: skip
            assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["a", "b"]
            state.status = 500
            assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["a", "b"]
            assert [m["name"] for m in http.get("/api/tags").json()["models"]] == ["a", "b"]
    finally:
        server.stop()


def test_with_nothing_known_the_outage_is_still_a_503(admin, service_key):
    admin_url, state = admin
    state.status = 503
    server = _gateway(admin_url, service_key)
    try:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": service_key}, timeout=15) as http:  # fmt: skip
            response = http.get("/v1/models")
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "route_lookup_failed"
            assert admin_url not in response.text  # a service key is no operator
    finally:
        server.stop()
