"""The public health check and the API's schema and docs."""

from typing import Any

from django.test import Client


def test_health_is_public_and_reports_the_database(db: None) -> None:
    response = Client().get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_health_only_answers_get(db: None) -> None:
    assert Client().post("/health").status_code == 405


def test_the_schema_documents_every_api_path(api_as: Any, viewer: Any) -> None:
    response = api_as(viewer).get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = set(response.json()["paths"])
    assert {
        "/api/llm-backends",
        "/api/llm-backends/{id}",
        "/api/route/{model_name}",
        "/api/routes",
        "/api/metrics/samples",
        "/api/llm-backends/model/{model_name}",
    } <= paths


def test_interactive_docs_render_for_a_signed_in_user(viewer: Any) -> None:
    client = Client()
    client.force_login(viewer)
    assert client.get("/api/docs").status_code == 200
