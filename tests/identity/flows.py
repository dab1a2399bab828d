"""Real access tokens from Athena's own provider: the authorization-code flow, by hand.

A user signs in (a session on the Django test client), the client is sent to
/openid/authorize, comes back with a code, and trades it at /openid/token: the same
requests a browser and a relying party make, with no consent screen.
"""

from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.test import Client as Browser
from oidc_provider.models import Client, ResponseType

REDIRECT_URI = "https://app.example/callback"


def register_client(client_id: str, scope: str) -> Client:
    """A confidential client of Athena's provider, allowed `scope`, with the code flow."""
    code, _ = ResponseType.objects.get_or_create(
        value="code", defaults={"description": "code (Authorization Code Flow)"}
    )
    client = Client.objects.create(
        name=client_id,
        client_id=client_id,
        client_secret=f"{client_id}-secret",
        client_type="confidential",
        jwt_alg="RS256",
        require_consent=False,
        _redirect_uris=REDIRECT_URI,
        _scope=scope,
    )
    client.response_types.add(code)
    return client


def user_access_token(user: Any, client: Client, scope: str) -> str:
    """Sign `user` in, authorize `client` for `scope`, and return the access token."""
    return str(user_tokens(user, client, scope)["access_token"])


def user_tokens(user: Any, client: Client, scope: str) -> dict[str, Any]:
    """Sign `user` in, authorize `client` for `scope`; return the token endpoint's answer."""
    browser = Browser()
    browser.force_login(user)
    authorized = browser.get(
        "/openid/authorize",
        {
            "client_id": client.client_id,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "state": "s1",
        },
    )
    assert authorized.status_code == 302, authorized.content
    code = parse_qs(urlsplit(authorized["Location"]).query)["code"][0]
    token = Browser().post(
        "/openid/token",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
    )
    assert token.status_code == 200, token.content
    answer: dict[str, Any] = token.json()
    return answer
