"""Bearer tokens from the external provider: userinfo or introspection, cached, and 503
(never 500) when the provider is down or hangs."""

import time
from typing import Any

import pytest
from django.contrib.auth.models import User

from athena_admin.identity import InvalidToken, ProviderUnavailable, authenticate_bearer
from athena_admin.identity.models import ExternalIdentity

pytestmark = pytest.mark.django_db

OPS = {"sub": "kc-1", "preferred_username": "olga", "groups": ["ops"]}


def test_a_provider_token_maps_to_a_user_with_synced_groups(
    fake_provider: Any, bearer: Any, groups: None, make_entry: Any
) -> None:
    make_entry("target")
    api = bearer(fake_provider.issue(OPS))
    new = {"model_name": "x", "backend_type": "ollama", "endpoint_url": "http://127.0.0.1:1"}
    assert api.post("/api/llm-backends", new, format="json").status_code == 201
    user = User.objects.get(external_identities__subject="kc-1")
    assert user.username == "olga"
    assert list(user.groups.values_list("name", flat=True)) == ["LLM operators"]


def test_answers_are_cached_under_a_hash_of_the_token(
    fake_provider: Any, bearer: Any, groups: None
) -> None:
    token = fake_provider.issue(OPS)
    api = bearer(token)
    for _ in range(3):
        assert api.get("/api/routes").status_code == 200
    assert fake_provider.calls == 1
    from django.core.cache import cache

    assert not any(token in str(k) for k in cache._cache)  # type: ignore[attr-defined]


def test_a_token_the_provider_refuses_is_a_401(fake_provider: Any, bearer: Any) -> None:
    response = bearer("not-a-real-token").get("/api/routes")
    assert response.status_code == 401
    assert response.json()["detail"] == "The identity provider does not accept this token."
    assert response["WWW-Authenticate"] == 'Bearer realm="athena"'


def test_no_user_is_created_unless_allowed(fake_provider: Any, bearer: Any, settings: Any) -> None:
    settings.OIDC_CREATE_USER = False
    response = bearer(fake_provider.issue(OPS)).get("/api/routes")
    assert response.status_code == 401
    assert not ExternalIdentity.objects.exists()


def test_an_existing_user_is_matched_by_verified_email_only(
    fake_provider: Any, settings: Any, operator: User
) -> None:
    settings.OIDC_CREATE_USER = False
    operator.email = "olivia@example.test"
    operator.save()
    claims = {"sub": "kc-9", "email": "olivia@example.test", "groups": ["ops"]}
    unverified = fake_provider.issue({**claims, "email_verified": False})
    verified = fake_provider.issue({**claims, "email_verified": True})

    with pytest.raises(InvalidToken):
        authenticate_bearer(unverified)
    assert authenticate_bearer(verified) == operator
    assert ExternalIdentity.objects.get(subject="kc-9").user == operator


def test_a_down_provider_is_a_503(fake_provider: Any, bearer: Any, settings: Any, down_url: str):
    settings.OIDC_OP_USER_ENDPOINT = f"{down_url}/userinfo"
    response = bearer(fake_provider.issue(OPS)).get("/api/routes")
    assert response.status_code == 503
    assert response.json()["detail"] == "The identity provider is unreachable."


def test_a_provider_answering_500_is_a_503(fake_provider: Any, bearer: Any) -> None:
    fake_provider.status = 500
    assert bearer(fake_provider.issue(OPS)).get("/api/routes").status_code == 503


def test_a_hanging_provider_times_out_as_a_503(
    fake_provider: Any, bearer: Any, settings: Any, hanging_server: str
) -> None:
    settings.OIDC_OP_USER_ENDPOINT = f"{hanging_server}/userinfo"
    settings.OIDC_TIMEOUT = 0.5
    token = fake_provider.issue(OPS)
    started = time.monotonic()
    response = bearer(token).get("/api/routes")
    assert response.status_code == 503
    assert "did not answer in time" in response.json()["detail"]
    assert time.monotonic() - started < 3


def test_introspection_keeps_only_active_tokens_meant_for_us(
    fake_provider: Any, settings: Any, groups: None
) -> None:
    settings.ATHENA_OIDC_INTROSPECTION_ENDPOINT = f"{fake_provider.url}/introspect"
    now = int(time.time())
    mine = {**OPS, "iss": "https://idp.example", "aud": "athena", "exp": now + 60}
    fake_provider.tokens["mine"] = mine
    fake_provider.tokens["theirs"] = {**mine, "aud": "other-client", "azp": "other-client"}
    fake_provider.tokens["foreign"] = {**mine, "iss": "https://elsewhere.example"}
    fake_provider.tokens["expired"] = {**mine, "exp": now - 1}

    assert authenticate_bearer("mine").username == "olga"
    for token in ("theirs", "foreign", "expired", "unknown"):
        with pytest.raises(InvalidToken):
            authenticate_bearer(token)


def test_the_gateway_function_raises_provider_unavailable(
    fake_provider: Any, settings: Any, hanging_server: str
) -> None:
    settings.OIDC_OP_USER_ENDPOINT = f"{hanging_server}/userinfo"
    settings.OIDC_TIMEOUT = 0.3
    with pytest.raises(ProviderUnavailable):
        authenticate_bearer(fake_provider.issue(OPS))


def test_the_gateway_function_knows_every_kind_of_token(
    service_key: str, client_token: str, revoked_key: str
) -> None:
    assert authenticate_bearer(service_key).username == "service:orchestrator"
    principal = authenticate_bearer(client_token)
    assert principal.username == "service:oidc-client-orchestrator"
    assert principal.has_perm("backends.add_requestsample")
    assert not principal.has_perm("backends.add_llmbackend")
    for bad in (revoked_key, "", "x" * 5000, "nope"):
        with pytest.raises(InvalidToken):
            authenticate_bearer(bad)
