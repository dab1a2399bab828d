"""The admin's SSO, end to end against Athena's own provider on a live server.

A browser (httpx, following redirects) clicks "Sign in with SSO", signs in on the
provider's page, comes back through the callback and lands in the admin; the groups
claim decides its rights, and is re-read at every login.
"""

import html
import re
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import Group, User

from athena_admin.identity.models import ExternalIdentity

pytestmark = pytest.mark.django_db(transaction=True)


def _provider_user(username: str, *groups: str) -> User:
    user = User.objects.create_user(username, email=f"{username}@example.test", password="pw-x")
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


def sso_login(base_url: str, username: str, password: str = "pw-x") -> httpx.Response:
    # Closed at the end: a kept-alive connection would keep a live-server thread (and its
    # database session) alive past the test.
    with httpx.Client(base_url=base_url, follow_redirects=True, timeout=15) as browser:
        page = browser.get("/admin/login/", params={"next": "/admin/"})
        assert page.status_code == 200
        link = re.search(r'href="(/oidc/authenticate/[^"]*)"[^>]*>Sign in with SSO<', page.text)
        assert link, "the admin login page has no SSO button"
        login_page = browser.get(html.unescape(link.group(1)))
        assert login_page.url.path == "/accounts/login/", login_page.url
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text)
        next_url = re.search(r'name="next" value="([^"]*)"', login_page.text)
        assert csrf and next_url
        return browser.post(
            str(login_page.url),
            data={
                "csrfmiddlewaretoken": csrf.group(1),
                "username": username,
                "password": password,
                "next": html.unescape(next_url.group(1)),
            },
        )


def _sso_user(issuer: str, provider_user: User) -> User:
    identity = ExternalIdentity.objects.get(issuer=issuer, subject=str(provider_user.pk))
    return User.objects.get(pk=identity.user_id)


def test_it_signs_in_an_operator_through_the_provider(
    sso_to_athena: str, live_server: Any, groups: None
) -> None:
    alice = _provider_user("alice", "athena-operators")

    landed = sso_login(live_server.url, "alice")

    assert landed.status_code == 200
    assert landed.url.path == "/admin/"
    assert "LLM routing: registry and operations" in landed.text
    user = _sso_user(sso_to_athena, alice)
    assert user.pk != alice.pk  # a new account, linked by (issuer, sub)
    assert user.is_staff and not user.is_superuser
    assert set(user.groups.values_list("name", flat=True)) == {"LLM operators"}
    assert user.has_perm("backends.add_llmbackend")


def test_a_changed_groups_claim_takes_operator_rights_away_at_next_login(
    sso_to_athena: str, live_server: Any, groups: None
) -> None:
    alice = _provider_user("alice", "athena-operators")
    assert sso_login(live_server.url, "alice").url.path == "/admin/"

    alice.groups.set([Group.objects.get_or_create(name="athena-viewers")[0]])
    landed = sso_login(live_server.url, "alice")

    assert landed.url.path == "/admin/"
    user = _sso_user(sso_to_athena, alice)
    assert set(user.groups.values_list("name", flat=True)) == {"LLM viewers"}
    assert not user.has_perm("backends.add_llmbackend")
    assert user.has_perm("backends.view_llmbackend")
    assert User.objects.filter(external_identities__issuer=sso_to_athena).count() == 1


def test_it_refuses_an_id_token_from_another_issuer(
    sso_to_athena: str, live_server: Any, groups: None, settings: Any
) -> None:
    settings.OIDC_OP_ISSUER = "https://some-other-idp.example"
    _provider_user("alice", "athena-operators")

    landed = sso_login(live_server.url, "alice")

    assert landed.url.path == "/admin/login/"
    assert landed.url.params.get("sso") == "failed"
    assert "Single sign-on failed" in landed.text
    assert not ExternalIdentity.objects.exists()


def test_it_does_not_create_users_unless_allowed(
    sso_to_athena: str, live_server: Any, groups: None, settings: Any
) -> None:
    settings.OIDC_CREATE_USER = False
    _provider_user("alice", "athena-operators")

    landed = sso_login(live_server.url, "alice")

    assert landed.url.params.get("sso") == "failed"
    assert not ExternalIdentity.objects.exists()
