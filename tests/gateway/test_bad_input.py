"""Bad input is a 400 in the client protocol's shape, naming the field at fault."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def http(gateway, auth, entry, openai_url):
    entry("phi", "mlx", openai_url)
    with httpx.Client(base_url=gateway, headers=auth, timeout=10) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/api/generate", b"{not json", "request body is not valid JSON"),
        ("/api/generate", b"[1, 2]", "request body must be a JSON object"),
        ("/api/generate", b"", "request body is empty"),
        ("/api/generate", {"prompt": "hi"}, "model is required"),
        ("/api/generate", {"model": 3, "prompt": "hi"}, "model must be a string"),
        ("/api/generate", {"model": "phi", "prompt": 5}, "prompt must be a string"),
        (
            "/api/generate",
            {"model": "phi", "prompt": "hi", "stream": "yes"},
            "stream must be true or false",
        ),  # fmt: skip
        (
            "/api/generate",
            {"model": "phi", "prompt": "hi", "options": []},
            "options must be an object",
        ),  # fmt: skip
        (
            "/api/generate",
            {"model": "phi", "prompt": "hi", "options": {"temperature": "hot"}},
            "options.temperature must be a number",
        ),  # fmt: skip
        (
            "/api/generate",
            {"model": "phi", "prompt": "hi", "options": {"num_predict": 1.5}},
            "options.num_predict must be an integer",
        ),  # fmt: skip
        (
            "/api/generate",
            {"model": "phi", "prompt": "hi", "images": ["aGk="]},
            "images is not supported",
        ),  # fmt: skip
        ("/api/chat", {"model": "phi", "messages": "hi"}, "messages must be a list"),
        (
            "/api/chat",
            {"model": "phi", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role must be one of",
        ),  # fmt: skip
    ],
)
def test_ollama_routes_answer_400_with_an_error_string(http, path, body, expected):
    response = http.post(path, **({"content": body} if isinstance(body, bytes) else {"json": body}))
    assert response.status_code == 400
    assert expected in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, "model"),
        ("/v1/chat/completions", {"model": "phi"}, "messages"),
        (
            "/v1/chat/completions",
            {"model": "phi", "messages": [{"role": "user", "content": 5}]},
            "messages",
        ),  # fmt: skip
        (
            "/v1/chat/completions",
            {"model": "phi", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
            "temperature",
        ),  # fmt: skip
        (
            "/v1/chat/completions",
            {"model": "phi", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
            "temperature",
        ),  # fmt: skip
        (
            "/v1/chat/completions",
            {"model": "phi", "messages": [{"role": "user", "content": "x"}], "max_tokens": "9"},
            "max_tokens",
        ),  # fmt: skip
        (
            "/v1/chat/completions",
            {"model": "phi", "messages": [{"role": "user", "content": "x"}], "n": 2},
            "n",
        ),  # fmt: skip
        (
            "/v1/chat/completions",
            {"model": "phi", "messages": [{"role": "user", "content": "x"}], "stream": 1},
            "stream",
        ),  # fmt: skip
        ("/v1/completions", {"model": "phi"}, "prompt"),
        ("/v1/completions", {"model": "phi", "prompt": ["a", "b"]}, "prompt"),
        ("/v1/completions", {"model": "phi", "prompt": "x", "stop": 5}, "stop"),
    ],
)
def test_openai_routes_answer_400_naming_the_param(http, path, body, param):
    response = http.post(path, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert error["message"].startswith(param)


def test_malformed_json_on_an_openai_route_is_a_400_in_openais_shape(http):
    response = http.post("/v1/chat/completions", content=b"{oops")
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("request body is not valid JSON")


def test_an_unknown_path_is_a_404_in_the_protocols_shape(http):
    assert http.get("/api/nothing").json() == {"error": "not found: GET /api/nothing"}
    assert http.get("/v1/nothing").json()["error"]["message"] == "not found: GET /v1/nothing"
    assert http.get("/api/generate").status_code == 405


def test_a_generation_route_refuses_other_methods_in_the_protocols_shape(http):
    ollama_style = http.get("/api/chat")
    assert ollama_style.status_code == 405
    assert ollama_style.json() == {"error": "method not allowed: GET /api/chat"}
    openai_style = http.put("/v1/chat/completions", json={})
    assert openai_style.status_code == 405
    assert openai_style.json()["error"]["message"] == "method not allowed: PUT /v1/chat/completions"


def test_a_chunked_body_over_the_limit_is_a_413(http):
    # No Content-Length to refuse it by: the gateway counts as the chunks arrive.
    def chunks():
        piece = b" " * (1024 * 1024)
        for _ in range(17):
            yield piece

    response = http.post("/v1/chat/completions", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["message"] == "request body is over 16777216 bytes"


def test_an_error_names_no_backend(http):
    for response in (
        http.post("/api/generate", content=b"{oops"),
        http.post("/v1/completions", json={"model": "phi"}),
        http.post("/api/show", json={}),
        http.get("/api/nothing"),
    ):
        assert response.status_code >= 400
        assert response.headers["x-athena-backend"] == "none"
        assert float(response.headers["x-athena-overhead-ms"]) >= 0
        assert response.headers["x-request-id"]
