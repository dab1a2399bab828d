"""Only access tokens issued for Athena act on Athena (issue 14, item 12).

A provider gives tokens to every application it serves; a token another application got
for a user (scope `openid`) must not let that application act with the user's rights here.
Athena's own tokens need the scope `athena.api` from a client allowed it; the external
provider's need our audience or that scope.
"""

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from oidc_provider.models import Client, Token

from athena_admin.identity import InvalidToken, authenticate_bearer
from tests.identity.flows import register_client, user_access_token, user_tokens

pytestmark = pytest.mark.django_db

NEW = {"model_name": "x", "backend_type": "ollama", "endpoint_url": "http://127.0.0.1:1"}


@pytest.fixture
def unrelated_app(signing_key: None) -> Client:
    """Another application signing its users in with Athena's provider."""
    return register_client("wiki", "openid email profile")


@pytest.fixture
def athena_cli(signing_key: None) -> Client:
    """A client registered to call Athena's API on behalf of its user."""
    return register_client("athena-cli", "openid athena.api")


def test_an_unrelated_apps_token_cannot_touch_the_registry(
    api: Any, operator: Any, unrelated_app: Client, make_entry: Any
) -> None:
    entry = make_entry("target")
    token = user_access_token(operator, unrelated_app, "openid email")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    for response in (
        api.get("/api/llm-backends"),
        api.post("/api/llm-backends", NEW, format="json"),
        api.delete(f"/api/llm-backends/{entry.pk}"),
    ):
        assert response.status_code == 401
        assert "not issued for Athena's API (scope athena.api)" in response.json()["detail"]
    with pytest.raises(InvalidToken, match="not issued for Athena"):
        authenticate_bearer(token)  # the gateway's check


def test_an_unrelated_app_asking_for_the_api_scope_is_still_refused(
    api: Any, operator: Any, unrelated_app: Client
) -> None:
    # The library's authorize endpoint grants any scope asked for; the client's own
    # scopes (set by an operator) decide.
    token = user_access_token(operator, unrelated_app, "openid athena.api")
    assert "athena.api" in Token.objects.get(access_token=token).scope
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get("/api/llm-backends").status_code == 401


def test_a_token_for_athena_acts_with_the_users_rights(
    api: Any, operator: Any, athena_cli: Client, make_entry: Any
) -> None:
    entry = make_entry("target")
    token = user_access_token(operator, athena_cli, "openid athena.api")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.post("/api/llm-backends", NEW, format="json").status_code == 201
    assert api.delete(f"/api/llm-backends/{entry.pk}").status_code == 204
    assert authenticate_bearer(token) == operator


def test_the_right_client_without_the_scope_in_the_token_is_refused(
    api: Any, operator: Any, athena_cli: Client
) -> None:
    token = user_access_token(operator, athena_cli, "openid")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get("/api/llm-backends").status_code == 401


def test_the_scope_is_a_setting(api: Any, operator: Any, settings: Any, signing_key: None) -> None:
    settings.ATHENA_API_SCOPE = "llm"
    cli = register_client("cli", "openid llm")
    token = user_access_token(operator, cli, "openid llm")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get("/api/llm-backends").status_code == 200


def test_a_client_credentials_token_needs_the_api_scope_too(api: Any, db: None) -> None:
    Client.objects.create(
        name="reports",
        client_id="reports",
        client_secret="reports-secret",
        client_type="confidential",
        _scope="reports.read",
    )
    issued = api.post(
        "/openid/token",
        {
            "grant_type": "client_credentials",
            "client_id": "reports",
            "client_secret": "reports-secret",
        },
    )
    assert issued.status_code == 200
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.json()['access_token']}")
    assert api.get("/api/routes").status_code == 401


# --- the external provider ---

OPS = {"sub": "kc-1", "preferred_username": "olga", "groups": ["ops"]}


def test_an_external_token_for_another_client_is_refused(
    fake_provider: Any, bearer: Any, groups: None
) -> None:
    theirs = fake_provider.issue(OPS, aud="wiki", azp="wiki")
    response = bearer(theirs).get("/api/llm-backends")
    assert response.status_code == 401
    assert fake_provider.calls == 0  # refused before asking the provider who it is


def test_an_external_token_with_our_audience_or_scope_is_accepted(
    fake_provider: Any, bearer: Any, groups: None, settings: Any
) -> None:
    for token in (
        fake_provider.issue(OPS),  # aud "athena", our client id
        fake_provider.issue(OPS, aud=["account", "athena"], azp="cli"),
        fake_provider.issue(OPS, aud="account", azp="cli", scope="openid athena.api"),
    ):
        assert bearer(token).get("/api/llm-backends").status_code == 200
    settings.ATHENA_OIDC_API_AUDIENCE = "athena-api"
    assert bearer(fake_provider.issue(OPS, aud="athena-api")).get("/api/routes").status_code == 200


def test_an_external_token_not_signed_by_the_provider_is_refused(
    fake_provider: Any, bearer: Any, groups: None
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = fake_provider.issue(OPS, key=other_key)
    expired = fake_provider.issue(OPS, exp=int(time.time()) - 5)
    foreign = fake_provider.issue(OPS, iss="https://elsewhere.example")
    for token in (forged, expired, foreign, "opaque-token-of-some-provider"):
        assert bearer(token).get("/api/routes").status_code == 401


def test_introspection_accepts_our_scope_and_refuses_other_clients(
    fake_provider: Any, settings: Any, groups: None
) -> None:
    settings.ATHENA_OIDC_INTROSPECTION_ENDPOINT = f"{fake_provider.url}/introspect"
    now = int(time.time())
    base = {**OPS, "iss": "https://idp.example", "exp": now + 60}
    fake_provider.tokens["scoped"] = {**base, "aud": "account", "scope": "openid athena.api"}
    fake_provider.tokens["openid-only"] = {**base, "aud": "wiki", "client_id": "wiki"}
    assert authenticate_bearer("scoped").username == "olga"
    with pytest.raises(InvalidToken):
        authenticate_bearer("openid-only")


# --- token lifetimes: the library stores tokens in plain text ---


def _refresh(api: Any, client: Client, refresh_token: str) -> Any:
    return api.post(
        "/openid/token",
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
    )


def test_a_refresh_token_works_within_its_window(
    api: Any, operator: Any, athena_cli: Client
) -> None:
    issued = user_tokens(operator, athena_cli, "openid athena.api")
    assert issued["expires_in"] == 300
    refreshed = _refresh(api, athena_cli, issued["refresh_token"])
    assert refreshed.status_code == 200, refreshed.content
    assert refreshed.json()["access_token"] != issued["access_token"]


def test_a_refresh_token_past_its_window_is_refused_and_forgotten(
    api: Any, operator: Any, athena_cli: Client, settings: Any
) -> None:
    settings.ATHENA_OIDC_PROVIDER_REFRESH_SECONDS = 60
    issued = user_tokens(operator, athena_cli, "openid athena.api")
    Token.objects.update(expires_at=timezone.now() - timedelta(seconds=61))
    refused = _refresh(api, athena_cli, issued["refresh_token"])
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "invalid_grant",
        "error_description": "The refresh token has expired.",
    }
    assert not Token.objects.filter(refresh_token=issued["refresh_token"]).exists()


@pytest.mark.parametrize("scope", ["", "athena api"])
def test_a_blank_or_spaced_api_scope_fails_the_system_check(settings: Any, scope: str) -> None:
    from athena_admin.identity.checks import check_sso_settings

    settings.ATHENA_API_SCOPE = scope
    assert "identity.E005" in [error.id for error in check_sso_settings()]
    settings.ATHENA_API_SCOPE = "athena.api"
    assert "identity.E005" not in [error.id for error in check_sso_settings()]


def test_stale_token_rows_are_deleted_as_new_tokens_are_issued(
    api: Any, operator: Any, athena_cli: Client, service_client: Client, settings: Any
) -> None:
    settings.ATHENA_OIDC_PROVIDER_REFRESH_SECONDS = 60
    old = user_tokens(operator, athena_cli, "openid athena.api")
    fresh = user_tokens(operator, athena_cli, "openid athena.api")
    Token.objects.filter(access_token=old["access_token"]).update(
        expires_at=timezone.now() - timedelta(seconds=61)
    )
    issued = api.post(
        "/openid/token",
        {
            "grant_type": "client_credentials",
            "client_id": "orchestrator",
            "client_secret": "orchestrator-secret",
        },
    )
    assert issued.status_code == 200
    left = set(Token.objects.values_list("access_token", flat=True))
    assert left == {fresh["access_token"], issued.json()["access_token"]}
