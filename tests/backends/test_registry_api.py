"""Every operation of the plan's API, with its bodies, status codes and messages."""

from typing import Any

import pytest

from backends.models import LLMBackend

BODY = {
    "model_name": "phi3:mini",
    "backend_type": "ollama",
    "endpoint_url": "http://localhost:11434",
    "enabled": True,
}
PLAN_RESPONSE_FIELDS = {
    "id",
    "model_name",
    "backend_type",
    "endpoint_url",
    "enabled",
    "priority",
    "avg_tokens_per_sec",
    "avg_latency_ms",
    "total_requests",
    "total_errors",
    "description",
}


@pytest.fixture
def client(api_as: Any, operator: Any) -> Any:
    return api_as(operator)


def test_create_answers_201_with_the_plans_fields_and_defaults(client: Any, operator: Any) -> None:
    response = client.post("/api/llm-backends", BODY, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body.keys() >= PLAN_RESPONSE_FIELDS
    assert body["priority"] == 100
    assert (body["max_tokens"], body["temperature_default"], body["timeout_seconds"]) == (
        2048,
        0.7,
        60,
    )
    assert (body["total_requests"], body["total_errors"]) == (0, 0)
    assert body["avg_latency_ms"] is None
    assert body["created_by"] == operator.username
    assert LLMBackend.objects.get().created_by == operator


def test_duplicate_model_is_a_400_with_the_plans_message(client: Any, make_entry: Any) -> None:
    make_entry("phi3:mini")
    response = client.post("/api/llm-backends", BODY, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == "Backend for model 'phi3:mini' already exists"
    assert LLMBackend.objects.count() == 1


def test_list_is_ordered_by_model_name(client: Any, make_entry: Any) -> None:
    make_entry("zeta")
    make_entry("alpha")
    response = client.get("/api/llm-backends")
    assert [e["model_name"] for e in response.json()] == ["alpha", "zeta"]


def test_get_one_and_404_for_missing(client: Any, make_entry: Any) -> None:
    entry = make_entry("alpha")
    assert client.get(f"/api/llm-backends/{entry.pk}").json()["model_name"] == "alpha"
    missing = client.get("/api/llm-backends/999999")
    assert missing.status_code == 404
    assert "detail" in missing.json()


def test_put_replaces_and_patch_changes_one_field(client: Any, make_entry: Any) -> None:
    entry = make_entry("alpha")
    put = client.put(
        f"/api/llm-backends/{entry.pk}",
        {
            **BODY,
            "model_name": "alpha",
            "backend_type": "mlx",
            "endpoint_url": "http://127.0.0.1:11435",
            "description": "fast",
        },
        format="json",
    )
    assert put.status_code == 200
    assert (put.json()["backend_type"], put.json()["description"]) == ("mlx", "fast")
    patch = client.patch(f"/api/llm-backends/{entry.pk}", {"enabled": False}, format="json")
    assert patch.status_code == 200
    assert patch.json()["enabled"] is False
    assert patch.json()["backend_type"] == "mlx"


def test_renaming_keeps_an_explicit_upstream_model(client: Any, make_entry: Any) -> None:
    entry = make_entry("alias", upstream_model="phi3:mini")
    tracked = make_entry("tracked")
    client.patch(f"/api/llm-backends/{entry.pk}", {"model_name": "alias2"}, format="json")
    client.patch(f"/api/llm-backends/{tracked.pk}", {"model_name": "tracked2"}, format="json")
    assert client.get(f"/api/llm-backends/{entry.pk}").json()["upstream_model"] == "phi3:mini"
    assert client.get(f"/api/llm-backends/{tracked.pk}").json()["upstream_model"] == "tracked2"


def test_renaming_onto_another_model_is_refused(client: Any, make_entry: Any) -> None:
    make_entry("alpha")
    beta = make_entry("beta")
    response = client.patch(f"/api/llm-backends/{beta.pk}", {"model_name": "alpha"}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == "Backend for model 'alpha' already exists"


def test_delete_answers_204_and_removes_it_from_chains(client: Any, make_entry: Any) -> None:
    fallback = make_entry("fallback")
    primary = make_entry("primary", fallbacks=["fallback"])
    assert client.delete(f"/api/llm-backends/{fallback.pk}").status_code == 204
    assert client.get(f"/api/llm-backends/{fallback.pk}").status_code == 404
    assert client.get(f"/api/llm-backends/{primary.pk}").json()["fallbacks"] == []


def test_lookup_by_model_returns_enabled_entries_only(client: Any, make_entry: Any) -> None:
    make_entry("phi3:mini")
    make_entry("off", enabled=False)
    assert client.get("/api/llm-backends/model/phi3:mini").json()["model_name"] == "phi3:mini"
    response = client.get("/api/llm-backends/model/off")
    assert response.status_code == 404
    assert response.json() == {"detail": "No backend configured for model 'off'"}


def test_fallback_chain_is_kept_in_the_order_given(client: Any, make_entry: Any) -> None:
    make_entry("b")
    make_entry("c")
    response = client.post(
        "/api/llm-backends", {**BODY, "model_name": "a", "fallbacks": ["c", "b"]}, format="json"
    )
    assert response.json()["fallbacks"] == ["c", "b"]
