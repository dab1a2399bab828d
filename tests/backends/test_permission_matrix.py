"""Who may do what: every persona against every endpoint."""

import uuid
from typing import Any

import pytest
from django.utils import timezone

from backends.services import service_key_create

OK, NEW, GONE, ACCEPTED = 200, 201, 204, 202
UNAUTH, DENIED = 401, 403


def _operations(entry_id: int) -> dict[str, tuple[str, str, Any]]:
    sample = {
        "id": str(uuid.uuid4()),
        "model": "m",
        "backend_type": "ollama",
        "endpoint_url": "http://127.0.0.1:11434",
        "started_at": timezone.now().isoformat(),
        "ok": True,
        "latency_ms": 5.0,
    }
    new = {
        "model_name": f"new-{uuid.uuid4().hex[:6]}",
        "backend_type": "ollama",
        "endpoint_url": "http://127.0.0.1:11434",
    }
    return {
        "list": ("get", "/api/llm-backends", None),
        "create": ("post", "/api/llm-backends", new),
        "read": ("get", f"/api/llm-backends/{entry_id}", None),
        "replace": ("put", f"/api/llm-backends/{entry_id}", {**new, "model_name": "target"}),
        "patch": ("patch", f"/api/llm-backends/{entry_id}", {"priority": 5}),
        "by_model": ("get", "/api/llm-backends/model/target", None),
        "route": ("get", "/api/route/target", None),
        "routes": ("get", "/api/routes", None),
        "ingest": ("post", "/api/metrics/samples", {"samples": [sample]}),
        "schema": ("get", "/api/schema", None),
        "delete": ("delete", f"/api/llm-backends/{entry_id}", None),
    }


READS = {"list": OK, "read": OK, "by_model": OK, "route": OK, "routes": OK, "schema": OK}
WRITES = {"create": NEW, "replace": OK, "patch": OK, "delete": GONE}

EXPECTED: dict[str, dict[str, int]] = {
    "anonymous": {op: UNAUTH for op in [*READS, *WRITES, "ingest"]},
    "revoked_key": {op: UNAUTH for op in [*READS, *WRITES, "ingest"]},
    # The schema is for whoever may read the API: a signed-in user in no group may not.
    "stranger": {op: DENIED for op in [*READS, *WRITES, "ingest"]},
    "viewer": {**READS, **{op: DENIED for op in WRITES}, "ingest": DENIED},
    "operator": {**READS, **WRITES, "ingest": DENIED},
    "operator_key": {**READS, **WRITES, "ingest": DENIED},
    "superuser": {**READS, **WRITES, "ingest": ACCEPTED},
    "service_key": {**READS, **{op: DENIED for op in WRITES}, "ingest": ACCEPTED},
}


@pytest.mark.parametrize("who", sorted(EXPECTED))
def test_permission_matrix(who: str, request: Any, api: Any, make_entry: Any) -> None:
    entry = make_entry("target")
    if who == "anonymous":
        client = api
    elif who in ("revoked_key", "service_key"):
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {request.getfixturevalue(who)}")
        client = api
    elif who == "operator_key":
        raw = service_key_create(name="olivia-laptop", owner=request.getfixturevalue("operator"))[1]
        api.credentials(HTTP_X_API_KEY=raw)
        client = api
    else:
        user = request.getfixturevalue(who)
        assert api.login(username=user.username, password=f"pw-{user.username}")
        client = api
    seen = {}
    for name, (method, url, body) in _operations(entry.pk).items():
        response = (
            getattr(client, method)(url, body, format="json")
            if body
            else getattr(client, method)(url)
        )
        seen[name] = response.status_code
    assert seen == EXPECTED[who]


def test_unauthenticated_answers_say_how_to_authenticate(api: Any, db: None) -> None:
    response = api.get("/api/llm-backends")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="athena"'


def test_session_writes_need_csrf(operator: Any, db: None) -> None:
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.login(username="olivia", password="pw-olivia")
    response = client.post(
        "/api/llm-backends",
        {"model_name": "x", "backend_type": "ollama", "endpoint_url": "http://127.0.0.1:1"},
        format="json",
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
