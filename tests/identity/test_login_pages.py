"""The admin login page: SSO button only when configured, password form switchable,
rate limits on both login pages and the token endpoint."""

from typing import Any

import pytest
from oidc_provider.models import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def sso_on(settings: Any) -> None:
    settings.OIDC_RP_CLIENT_ID = "athena"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = "https://idp.example/authorize"
    settings.OIDC_OP_TOKEN_ENDPOINT = "https://idp.example/token"


def test_there_is_no_sso_button_without_a_provider(client: Any) -> None:
    page = client.get("/admin/login/")
    assert page.status_code == 200
    assert "Sign in with SSO" not in page.content.decode()
    assert 'id="login-form"' in page.content.decode()


def test_the_sso_button_starts_the_flow(client: Any, sso_on: None) -> None:
    page = client.get("/admin/login/?next=/admin/backends/")
    assert 'href="/oidc/authenticate/?next=/admin/backends/"' in page.content.decode()
    started = client.get("/oidc/authenticate/?next=/admin/backends/")
    assert started.status_code == 302
    assert started["Location"].startswith("https://idp.example/authorize?response_type=code")
    assert "code_challenge=" in started["Location"]


def test_password_login_can_be_turned_off(
    client: Any, sso_on: None, settings: Any, operator: Any
) -> None:
    settings.ATHENA_ADMIN_PASSWORD_LOGIN = False
    page = client.get("/admin/login/").content.decode()
    assert "Sign in with SSO" in page and 'id="login-form"' not in page
    refused = client.post("/admin/login/", {"username": "olivia", "password": "pw-olivia"})
    assert refused.status_code == 403
    assert client.get("/admin/").status_code == 302


def test_password_login_still_works_by_default(client: Any, operator: Any) -> None:
    response = client.post("/admin/login/", {"username": "olivia", "password": "pw-olivia"})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_a_failed_sso_login_says_so(client: Any, sso_on: None) -> None:
    assert "Single sign-on failed" in client.get("/admin/login/?sso=failed").content.decode()


def test_a_hanging_token_endpoint_is_a_failed_login_not_a_hang(
    client: Any, sso_on: None, settings: Any, hanging_server: str
) -> None:
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{hanging_server}/token"
    settings.OIDC_OP_ISSUER = "https://idp.example"
    settings.OIDC_TIMEOUT = 0.5
    started = client.get("/oidc/authenticate/")
    state = started["Location"].split("state=")[1].split("&")[0]
    response = client.get(f"/oidc/callback/?code=abc&state={state}")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?sso=failed"


@pytest.mark.parametrize("path", ["/admin/login/", "/accounts/login/"])
def test_login_attempts_are_rate_limited(client: Any, settings: Any, path: str) -> None:
    settings.ATHENA_LOGIN_RATE = "3/hour"  # an hour window: no boundary inside the test
    codes = [
        client.post(path, {"username": "olivia", "password": f"guess-{n}"}).status_code
        for n in range(5)
    ]
    assert codes[:3] == [200, 200, 200]
    assert codes[3:] == [429, 429]


def test_a_guesser_elsewhere_does_not_lock_the_real_user_out(
    client: Any, settings: Any, operator: Any
) -> None:
    settings.ATHENA_LOGIN_RATE = "2/hour"  # an hour window: no boundary inside the test
    login = {"username": "olivia", "password": "pw-olivia"}
    for _ in range(5):
        client.post("/admin/login/", {**login, "password": "guess"}, REMOTE_ADDR="10.6.6.6")
    blocked = client.post("/admin/login/", login, REMOTE_ADDR="10.6.6.6")
    assert blocked.status_code == 429
    assert 1 <= int(blocked["Retry-After"]) <= 3601
    assert client.post("/admin/login/", login, REMOTE_ADDR="10.0.0.7").status_code == 302


def test_one_address_trying_many_usernames_is_limited_too(client: Any, settings: Any) -> None:
    settings.ATHENA_LOGIN_ADDRESS_RATE = "3/hour"  # an hour window: no boundary inside the test
    codes = [
        client.post("/admin/login/", {"username": f"user{n}", "password": "x"}).status_code
        for n in range(4)
    ]
    assert codes == [200, 200, 200, 429]


def test_the_token_endpoint_is_rate_limited(
    client: Any, settings: Any, service_client: Client
) -> None:
    settings.ATHENA_TOKEN_RATE = "2/hour"  # an hour window: no boundary inside the test
    body = {"grant_type": "client_credentials", "client_id": "orchestrator", "client_secret": "x"}
    codes = [client.post("/openid/token", body).status_code for _ in range(3)]
    assert codes == [400, 400, 429]


def test_the_provider_login_page_signs_in_non_staff_users(client: Any) -> None:
    from django.contrib.auth.models import User

    User.objects.create_user("pat", password="pw-pat")
    response = client.post(
        "/accounts/login/", {"username": "pat", "password": "pw-pat", "next": "/openid/jwks"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/openid/jwks"
