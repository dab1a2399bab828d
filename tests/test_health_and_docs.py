"""The public health check and the API's schema and docs."""

import re
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from rest_framework.test import APIClient


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


@pytest.mark.parametrize("path", ["/api/docs", "/api/redoc"])
def test_the_docs_pages_load_their_assets_from_our_own_static_files(viewer: Any, path: str) -> None:
    client = Client()
    client.force_login(viewer)
    page = client.get(path).content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', page)
    assert assets, page
    for asset in assets:
        assert asset.startswith("/static/drf_spectacular_sidecar/"), asset
        # Every one is really there (the static files finder serves them in tests).
        assert finders.find(asset.removeprefix("/static/")), asset
    assert "cdn" not in page.lower()


@pytest.mark.parametrize("path", ["/api/schema", "/api/docs", "/api/redoc"])
def test_the_schema_and_docs_are_for_whoever_may_read_the_api(
    path: str, viewer: Any, operator: Any, stranger: Any, service_key: str
) -> None:
    def client_as(who: Any) -> APIClient:
        client = APIClient()  # a fresh one each: a forced login would outlive the next call
        if isinstance(who, str):
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {who}")
        elif who is not None:
            client.force_authenticate(who)
        return client

    assert client_as(stranger).get(path).status_code == 403  # signed in, may read nothing
    for reader in (viewer, operator, service_key):
        assert client_as(reader).get(path).status_code == 200, reader


def test_the_schema_answers_a_signed_out_client_in_the_apis_way(db: None) -> None:
    response = APIClient().get("/api/schema")
    assert response.status_code == 401
    assert b"Authentication credentials were not provided." in response.content


def test_a_bad_key_is_refused_on_the_docs_pages_too(db: None) -> None:
    for path in ("/api/docs", "/api/redoc"):
        client = APIClient()
        client.credentials(HTTP_X_API_KEY="athk_not-a-key")
        assert client.get(path).status_code == 401


@pytest.mark.parametrize("path", ["/api/docs", "/api/redoc"])
def test_a_signed_out_person_is_sent_to_sign_in_and_back(db: None, path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={path}"
