"""Malformed bodies get a clear 4xx and change nothing."""

from typing import Any

import pytest

from backends.models import LLMBackend, is_model_name


@pytest.fixture
def client(api_as: Any, operator: Any) -> Any:
    return api_as(operator)


def test_malformed_json_is_a_400_that_says_parse_error(client: Any) -> None:
    response = client.post("/api/llm-backends", b'{"model_name": ', content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_a_json_array_is_refused(client: Any) -> None:
    response = client.post("/api/llm-backends", b"[1, 2]", content_type="application/json")
    assert response.status_code == 400
    assert LLMBackend.objects.count() == 0


def test_a_10_mb_body_is_a_413(client: Any) -> None:
    body = b'{"model_name": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    response = client.post("/api/llm-backends", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["detail"] == "Request body too large."


def test_an_unsupported_content_type_is_a_415(client: Any) -> None:
    response = client.post("/api/llm-backends", b"<xml/>", content_type="application/xml")
    assert response.status_code == 415


def test_wrong_types_name_each_field(client: Any) -> None:
    response = client.post(
        "/api/llm-backends",
        {"model_name": 5, "backend_type": ["ollama"], "endpoint_url": None, "priority": "high"},
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert {"backend_type", "endpoint_url", "priority"} <= body.keys()


def test_unicode_and_path_characters_in_the_lookup_url_are_a_clean_404(client: Any) -> None:
    for name in ["mod%C3%A8le", "a%2F..%2Fb", "..%2F..%2Fetc", "%00"]:
        response = client.get(f"/api/llm-backends/model/{name}")
        assert response.status_code == 404, name


def test_unknown_api_paths_answer_json_404(client: Any) -> None:
    for path in ["/api/nope", "/api/llm-backends/null,null", "/api/route/a%0Ab"]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "Not found."}


def test_a_trailing_newline_never_reaches_a_stored_model_name(client: Any) -> None:
    assert not is_model_name("abc\n")
    response = client.post(
        "/api/llm-backends",
        {"model_name": "abc\n", "backend_type": "ollama", "endpoint_url": "http://127.0.0.1:1"},
        format="json",
    )
    assert response.status_code == 201  # the API trims surrounding whitespace
    assert LLMBackend.objects.get().model_name == "abc"
