"""Service keys, the bearer-token hook, and the loopback-open setting."""

from __future__ import annotations

import asyncio
import time

import httpx
import ollama
import pytest

from athena_admin.gateway import GatewayConfig
from athena_admin.gateway.auth import Authenticator

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def model(entry, ollama_url) -> str:
    entry("llama", "ollama", ollama_url)
    return "llama"


def test_no_key_is_a_401_in_each_protocols_shape(gateway, model):
    ollama_style = httpx.post(f"{gateway}/api/generate", json={"model": model, "prompt": "hi"})
    assert ollama_style.status_code == 401
    assert ollama_style.json()["error"].startswith("unauthorized")
    assert ollama_style.headers["www-authenticate"] == 'Bearer realm="athena"'
    openai_style = httpx.get(f"{gateway}/v1/models", headers={"Authorization": "Bearer sk-nope"})
    assert openai_style.status_code == 401
    assert openai_style.json()["error"]["code"] == "invalid_api_key"


def test_a_key_works_as_bearer_or_x_api_key(gateway, model, service_key):
    for headers in ({"Authorization": f"Bearer {service_key}"}, {"X-API-Key": service_key}):
        assert httpx.get(f"{gateway}/api/tags", headers=headers).status_code == 200


def test_a_revoked_or_wrong_key_is_refused(gateway, model, revoked_key, service_key):
    for key in (revoked_key, service_key[:-2] + "xx"):
        response = httpx.get(f"{gateway}/api/tags", headers={"X-API-Key": key})
        assert response.status_code == 401


def test_a_validated_key_is_cached_for_the_ttl(make_gateway, model, service_key):
    from backends.models import ServiceKey
    from backends.services import service_keys_revoke

    cached, uncached = make_gateway(), make_gateway(auth_cache_seconds=0)
    headers = {"X-API-Key": service_key}
    assert httpx.get(f"{cached}/api/tags", headers=headers).status_code == 200
    assert httpx.get(f"{uncached}/api/tags", headers=headers).status_code == 200
    service_keys_revoke(keys=ServiceKey.objects.all())
    # The hot path asks no database: within the TTL the key is still known good.
    assert httpx.get(f"{cached}/api/tags", headers=headers).status_code == 200
    assert httpx.get(f"{uncached}/api/tags", headers=headers).status_code == 401


def test_a_revoked_key_stops_working_once_its_cache_entry_expires(make_gateway, model, service_key):
    from backends.models import ServiceKey
    from backends.services import service_keys_revoke

    gateway = make_gateway(auth_cache_seconds=0.5)
    headers = {"X-API-Key": service_key}
    assert httpx.get(f"{gateway}/api/tags", headers=headers).status_code == 200
    service_keys_revoke(keys=ServiceKey.objects.all())
    time.sleep(0.6)  # the bound: auth_cache_seconds
    assert httpx.get(f"{gateway}/api/tags", headers=headers).status_code == 401


def test_the_auth_cache_keeps_digests_never_the_credentials():
    calls: list[str] = []

    def hook(token: str) -> str | None:
        calls.append(token)
        return "alice" if token == "oidc-access-token" else None

    auth = Authenticator(GatewayConfig(bearer_authenticator=hook, auth_cache_seconds=0.2))

    async def twice() -> None:
        for _ in range(2):
            principal = await auth.authenticate(None, "Bearer oidc-access-token", None)
            assert principal is not None and principal.name == "alice"

    asyncio.run(twice())
    assert calls == ["oidc-access-token"]  # the second check was the cache's
    assert all(b"oidc-access-token" not in key for key in auth._cache)
    time.sleep(0.25)
    asyncio.run(twice())
    assert len(calls) == 2  # asked again once the entry expired


def test_probes_need_no_key(gateway):
    assert httpx.get(f"{gateway}/").text == "Ollama is running"
    assert httpx.get(f"{gateway}/api/version").status_code == 200
    assert httpx.get(f"{gateway}/health").status_code == 200


def test_loopback_clients_need_no_key_when_the_setting_opens_it(make_gateway, model):
    gateway = make_gateway(open_on_loopback=True)
    client = ollama.Client(host=gateway)
    assert client.generate(model=model, prompt="hi").response == "Hello, world!"
    # An OpenAI SDK must send some key: on loopback any is let in.
    response = httpx.get(f"{gateway}/v1/models", headers={"Authorization": "Bearer sk-anything"})
    assert response.status_code == 200


def test_the_loopback_setting_never_opens_other_addresses():
    auth = Authenticator(GatewayConfig(open_on_loopback=True))
    assert asyncio.run(auth.authenticate(None, None, "127.0.0.1")) is not None
    assert asyncio.run(auth.authenticate(None, None, "::1")) is not None
    assert asyncio.run(auth.authenticate(None, None, "192.168.1.20")) is None
    assert asyncio.run(auth.authenticate(None, None, None)) is None
    closed = Authenticator(GatewayConfig(open_on_loopback=False))
    assert asyncio.run(closed.authenticate(None, None, "127.0.0.1")) is None


def test_a_bearer_token_hook_can_admit_other_tokens(make_gateway, model):
    def authenticate_bearer(token: str) -> str | None:
        return "alice" if token == "oidc-access-token" else None

    gateway = make_gateway(bearer_authenticator=authenticate_bearer)
    ok = httpx.get(f"{gateway}/api/tags", headers={"Authorization": "Bearer oidc-access-token"})
    assert ok.status_code == 200
    refused = httpx.get(f"{gateway}/api/tags", headers={"Authorization": "Bearer forged"})
    assert refused.status_code == 401
