"""The permission matrix of tests/backends, for identities that come through OIDC.

An SSO operator or viewer (external provider token, groups from the claim) must be able to
do exactly what the local persona can; a client-credentials token exactly what a service
key can; an expired or revoked token nothing.
"""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from oidc_provider.models import Client, Token

from athena_admin.identity.services import clients_set_active
from tests.backends.test_permission_matrix import EXPECTED, _operations

# persona -> the local persona whose row of the matrix it must match
AS = {
    "sso_operator": "operator",
    "sso_viewer": "viewer",
    "sso_no_group": "stranger",
    "client_credentials": "service_key",
    "expired_client_token": "revoked_key",
    "revoked_client_token": "revoked_key",
}


@pytest.mark.parametrize("who", sorted(AS))
def test_oidc_permission_matrix(
    who: str, request: Any, api: Any, make_entry: Any, groups: None
) -> None:
    entry = make_entry("target")
    if who.startswith("sso_"):
        provider = request.getfixturevalue("fake_provider")
        claim = {"sso_operator": ["ops"], "sso_viewer": ["readers"], "sso_no_group": []}[who]
        token = provider.issue({"sub": who, "groups": claim})
    else:
        token = request.getfixturevalue("client_token")
        if who == "expired_client_token":
            Token.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        if who == "revoked_client_token":
            clients_set_active(clients=Client.objects.all(), active=False)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    seen = {}
    for name, (method, url, body) in _operations(entry.pk).items():
        call = getattr(api, method)
        response = call(url, body, format="json") if body else call(url)
        seen[name] = response.status_code
    assert seen == EXPECTED[AS[who]]
