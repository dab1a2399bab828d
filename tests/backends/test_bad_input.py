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


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"model_name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json"),
        (
            b'{"model_name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "application/x-www-form-urlencoded",
        ),  # curl -d
        (b'{"model_name": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}", "application/json"),
        (b"[" * 500 + b"]" * 500, "application/json"),
    ],
)
def test_deeply_nested_json_is_a_400_naming_the_problem(
    client: Any, body: bytes, content_type: str | None
) -> None:
    kwargs = {"content_type": content_type} if content_type else {}
    response = client.generic("POST", "/api/llm-backends", body, **kwargs)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"] == "JSON parse error - nested deeper than 32 levels"
    assert LLMBackend.objects.count() == 0


def test_deeply_nested_samples_are_a_400_too(api_as: Any, service_key: str) -> None:
    body = b'{"samples": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = api_as(service_key).generic(
        "POST", "/api/metrics/samples", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert "nested deeper" in response.json()["detail"]


def test_nesting_an_api_body_needs_is_accepted(client: Any) -> None:
    body = {"model_name": "m", "backend_type": "ollama", "endpoint_url": "http://127.0.0.1:1"}
    response = client.post("/api/llm-backends", {**body, "fallbacks": []}, format="json")
    assert response.status_code == 201
