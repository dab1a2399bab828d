"""Who may use a model: `backends.use_llmbackend`, held by both groups, checked at the gateway.

A user's personal key (or token) without it is valid (not a 401) but refused with a 403 in
the client's protocol, listings included; keys without an owner are services' and work.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from backends.services import service_key_create

pytestmark = pytest.mark.django_db(transaction=True)

GENERATE = {"model": "llama", "prompt": "hi", "stream": False}
CHAT = {"model": "llama", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def model(entry: Any, ollama_url: str) -> str:
    entry("llama", "ollama", ollama_url)
    return "llama"


def personal_key(user: Any) -> dict[str, str]:
    return {"X-API-Key": service_key_create(name=f"{user.username}-laptop", owner=user)[1]}


@pytest.mark.parametrize("persona", ["viewer", "operator", "superuser"])
def test_users_in_a_group_and_superusers_use_models(
    persona: str, request: Any, gateway: str, model: str
) -> None:
    headers = personal_key(request.getfixturevalue(persona))
    answer = httpx.post(f"{gateway}/api/generate", json=GENERATE, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["response"] == "Hello, world!"
    models = httpx.get(f"{gateway}/v1/models", headers=headers)
    assert [m["id"] for m in models.json()["data"]] == ["llama"]


def test_a_service_key_uses_models(gateway: str, model: str, auth: dict[str, str]) -> None:
    answer = httpx.post(f"{gateway}/api/generate", json=GENERATE, headers=auth, timeout=10)
    assert answer.status_code == 200


def test_a_user_in_no_group_is_refused_in_each_protocols_shape(
    gateway: str, model: str, stranger: Any
) -> None:
    headers = personal_key(stranger)
    ollama_style = httpx.post(f"{gateway}/api/generate", json=GENERATE, headers=headers)
    assert ollama_style.status_code == 403
    assert "use_llmbackend" in ollama_style.json()["error"]
    openai_style = httpx.post(f"{gateway}/v1/chat/completions", json=CHAT, headers=headers)
    assert openai_style.status_code == 403
    assert openai_style.json()["error"]["code"] == "permission_denied"
    assert "use_llmbackend" in openai_style.json()["error"]["message"]


def test_a_user_in_no_group_sees_no_model_lists(gateway: str, model: str, stranger: Any) -> None:
    headers = personal_key(stranger)
    for path in ("/api/tags", "/v1/models", "/api/ps"):
        response = httpx.get(f"{gateway}{path}", headers=headers)
        assert response.status_code == 403, path
        assert "llama" not in response.text


def test_the_permission_alone_is_enough(gateway: str, model: str, stranger: Any) -> None:
    from django.contrib.auth.models import Permission

    stranger.user_permissions.add(Permission.objects.get(codename="use_llmbackend"))
    headers = personal_key(stranger)
    assert httpx.post(f"{gateway}/api/generate", json=GENERATE, headers=headers).status_code == 200


@pytest.fixture
def oidc_gateway(make_gateway: Any) -> str:
    from athena_admin.identity.gateway import authenticate_gateway_bearer

    return make_gateway(bearer_authenticator=authenticate_gateway_bearer)


def _athena_token(user: Any, client_id: str, scope: str) -> dict[str, str]:
    from django.core.management import call_command

    from tests.identity.flows import register_client, user_access_token

    call_command("ensure_oidc_key", verbosity=0)
    client = register_client(client_id, scope)
    return {"Authorization": f"Bearer {user_access_token(user, client, scope)}"}


def test_oidc_tokens_follow_the_same_rules(
    oidc_gateway: str, model: str, viewer: Any, stranger: Any
) -> None:
    ok = httpx.post(
        f"{oidc_gateway}/api/generate",
        json=GENERATE,
        headers=_athena_token(viewer, "cli", "openid athena.api"),
        timeout=10,
    )
    assert ok.status_code == 200, ok.text
    no_group = _athena_token(stranger, "cli-2", "openid athena.api")
    assert (
        httpx.post(f"{oidc_gateway}/api/generate", json=GENERATE, headers=no_group).status_code
        == 403
    )
    # A token another application got for the viewer: not Athena's, so not valid here.
    unrelated = _athena_token(viewer, "wiki", "openid")
    assert httpx.get(f"{oidc_gateway}/v1/models", headers=unrelated).status_code == 401
