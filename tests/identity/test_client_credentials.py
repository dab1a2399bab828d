"""Services with a client-credentials token from Athena's provider: a service key's rights."""

import uuid
from datetime import timedelta
from typing import Any

from django.utils import timezone
from oidc_provider.models import Client, Token

from athena_admin.identity.services import clients_set_active


def _sample() -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "model": "phi3:mini",
        "backend_type": "ollama",
        "endpoint_url": "http://127.0.0.1:11434",
        "started_at": timezone.now().isoformat(),
        "ok": True,
        "latency_ms": 12.0,
    }


def _token_request(api: Any, **fields: str) -> Any:
    body = {"grant_type": "client_credentials", "client_id": "orchestrator", **fields}
    return api.post("/openid/token", body)


def test_the_token_endpoint_issues_an_opaque_short_lived_token(
    api: Any, service_client: Client
) -> None:
    response = _token_request(api, client_secret="orchestrator-secret")
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    # Short: the library keeps access tokens in plain text (docs/identity.md).
    assert body["expires_in"] == 300
    assert response["Cache-Control"] == "no-store"
    assert Token.objects.get(access_token=body["access_token"]).user is None


def test_a_token_reads_routes_and_reports_samples(
    client_token: str, bearer: Any, make_entry: Any
) -> None:
    make_entry("phi3:mini")
    api = bearer(client_token)
    assert api.get("/api/route/phi3:mini").status_code == 200
    assert api.get("/api/llm-backends").status_code == 200
    response = api.post("/api/metrics/samples", {"samples": [_sample()]}, format="json")
    assert response.status_code == 202


def test_a_token_cannot_write_the_registry(client_token: str, bearer: Any, make_entry: Any) -> None:
    entry = make_entry("phi3:mini")
    api = bearer(client_token)
    new = {"model_name": "x", "backend_type": "ollama", "endpoint_url": "http://127.0.0.1:1"}
    assert api.post("/api/llm-backends", new, format="json").status_code == 403
    assert api.patch(f"/api/llm-backends/{entry.pk}", {"priority": 3}).status_code == 403
    assert api.delete(f"/api/llm-backends/{entry.pk}").status_code == 403


def test_an_expired_token_is_refused(client_token: str, bearer: Any) -> None:
    Token.objects.filter(access_token=client_token).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = bearer(client_token).get("/api/routes")
    assert response.status_code == 401
    assert response.json()["detail"] == "The access token has expired."


def test_deactivating_a_client_revokes_its_tokens_and_stops_new_ones(
    api: Any, client_token: str, bearer: Any, service_client: Client
) -> None:
    clients_set_active(clients=Client.objects.filter(pk=service_client.pk), active=False)

    assert not Token.objects.filter(client=service_client).exists()
    assert bearer(client_token).get("/api/routes").status_code == 401
    refused = _token_request(api, client_secret="orchestrator-secret")
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_client"


def test_a_token_of_a_switched_off_client_is_refused_even_if_it_survived(
    client_token: str, bearer: Any, service_client: Client
) -> None:
    from athena_admin.identity.models import ClientState

    ClientState.objects.create(client=service_client, is_active=False)
    response = bearer(client_token).get("/api/routes")
    assert response.status_code == 401
    assert "deactivated" in response.json()["detail"]


def test_a_deleted_client_takes_its_tokens_with_it(
    client_token: str, bearer: Any, service_client: Client
) -> None:
    service_client.delete()
    assert bearer(client_token).get("/api/routes").status_code == 401


def test_a_wrong_secret_gets_no_token(api: Any, service_client: Client) -> None:
    assert _token_request(api, client_secret="guess").status_code == 400


def test_a_blank_secret_never_matches_a_confidential_client_without_one(
    api: Any, service_client: Client
) -> None:
    # django-oidc-provider compares secrets with ==, so "" would match a blank secret.
    Client.objects.filter(pk=service_client.pk).update(client_secret="")
    assert _token_request(api, client_secret="").status_code == 400


def test_a_token_in_the_query_string_is_refused(
    api: Any, client_token: str, make_entry: Any
) -> None:
    make_entry("phi3:mini")
    response = api.get("/api/route/phi3:mini", {"access_token": client_token})
    assert response.status_code == 401
    assert "query string" in response.json()["detail"]


def test_a_token_in_the_query_string_is_refused_even_beside_a_good_header(
    client_token: str, bearer: Any
) -> None:
    response = bearer(client_token).get("/api/routes?access_token=" + client_token)
    assert response.status_code == 401


def test_a_user_token_from_athenas_provider_acts_as_that_user(
    api: Any, service_client: Client, operator: Any, bearer: Any
) -> None:
    token = Token.objects.create(
        client=service_client,
        user=operator,
        access_token=uuid.uuid4().hex,
        refresh_token=uuid.uuid4().hex,
        expires_at=timezone.now() + timedelta(minutes=5),
        _scope="openid athena.api",
    )
    new = {"model_name": "x", "backend_type": "ollama", "endpoint_url": "http://127.0.0.1:1"}
    api = bearer(token.access_token)
    assert api.post("/api/llm-backends", new, format="json").status_code == 201
    operator.is_active = False
    operator.save()
    assert api.get("/api/routes").status_code == 401
