"""Athena as a provider: discovery and JWKS are published, the key command is idempotent."""

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from oidc_provider.models import RSAKey

pytestmark = pytest.mark.django_db


def test_the_key_command_creates_one_key_and_keeps_it() -> None:
    first, second = StringIO(), StringIO()
    call_command("ensure_oidc_key", stdout=first)
    call_command("ensure_oidc_key", stdout=second)
    assert RSAKey.objects.count() == 1
    kid = RSAKey.objects.get().kid
    assert first.getvalue().startswith(f"Created OIDC signing key (kid {kid})")
    assert second.getvalue().startswith(f"Kept existing OIDC signing key (kid {kid})")


def test_discovery_names_every_endpoint(client: Any, signing_key: None) -> None:
    config = client.get("/openid/.well-known/openid-configuration").json()
    assert config["issuer"] == "http://testserver/openid"
    assert config["token_endpoint"] == "http://testserver/openid/token"
    assert config["jwks_uri"] == "http://testserver/openid/jwks"
    assert "RS256" in config["id_token_signing_alg_values_supported"]


def test_discovery_uses_site_url_when_set(client: Any, settings: Any) -> None:
    settings.SITE_URL = "https://athena.example"
    config = client.get("/openid/.well-known/openid-configuration").json()
    assert config["issuer"] == "https://athena.example/openid"


def test_jwks_publishes_the_public_key_only(client: Any, signing_key: None) -> None:
    keys = client.get("/openid/jwks").json()["keys"]
    assert [k["kid"] for k in keys] == [RSAKey.objects.get().kid]
    assert keys[0]["kty"] == "RSA" and "d" not in keys[0]


def test_the_provider_logger_never_runs_at_debug() -> None:
    import logging

    assert not logging.getLogger("oidc_provider").isEnabledFor(logging.DEBUG)


def test_userinfo_refuses_a_token_in_the_query_string(client: Any, service_client: Any) -> None:
    response = client.get("/openid/userinfo?access_token=abc")
    assert response.status_code == 400
    assert 'error="invalid_request"' in response["WWW-Authenticate"]


def test_userinfo_answers_401_not_500_for_a_client_credentials_token(
    client: Any, service_client: Any
) -> None:
    service_client._scope = "openid athena.api"
    service_client.save()
    token = client.post(
        "/openid/token",
        {
            "grant_type": "client_credentials",
            "client_id": "orchestrator",
            "client_secret": "orchestrator-secret",
            "scope": "openid",
        },
    ).json()["access_token"]
    response = client.get("/openid/userinfo", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert "no user" in response["WWW-Authenticate"]
