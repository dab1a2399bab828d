"""The provider's client admin: switching clients off revokes their tokens."""

from typing import Any

import pytest
from oidc_provider.models import Client, Token

from athena_admin.identity.models import ClientState

pytestmark = pytest.mark.django_db


def test_the_deactivate_action_revokes_tokens(
    client: Any, superuser: Any, service_client: Client, client_token: str
) -> None:
    client.force_login(superuser)
    response = client.post(
        "/admin/oidc_provider/client/",
        {"action": "deactivate", "_selected_action": [service_client.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Deactivated 1 client(s)." in response.content.decode()
    assert not Token.objects.filter(client=service_client).exists()
    assert ClientState.objects.get(client=service_client).is_active is False


def test_the_activate_action_switches_a_client_back_on(
    client: Any, superuser: Any, service_client: Client
) -> None:
    ClientState.objects.create(client=service_client, is_active=False)
    client.force_login(superuser)
    client.post(
        "/admin/oidc_provider/client/",
        {"action": "activate", "_selected_action": [service_client.pk]},
    )
    assert ClientState.objects.get(client=service_client).is_active is True


def test_the_client_list_shows_whether_each_is_active(
    client: Any, superuser: Any, service_client: Client
) -> None:
    client.force_login(superuser)
    page = client.get("/admin/oidc_provider/client/")
    assert page.status_code == 200
    assert "orchestrator" in page.content.decode()
