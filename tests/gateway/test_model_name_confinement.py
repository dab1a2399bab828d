"""A model name never reaches another admin endpoint, and no admin answer reaches a client.

The review's key holder sent ``"model": "../llm-backends/1"``: the router fetched
GET /api/llm-backends/1 with the gateway's service key and echoed the entry in its error.
"""

from __future__ import annotations

import httpx
import pytest

from athena_admin.gateway import GatewayConfig
from tests.gateway.conftest import serve_gateway
from tests.upstreams.admin import AdminStandIn, admin_app
from tests.upstreams.runner import serve_in_thread

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_URL = "http://127.0.0.1:21999"  # the entry's endpoint: must never be shown


@pytest.fixture
def http(gateway, auth, entry):
    entry("secret-model", "ollama", SECRET_URL, upstream_model="hidden-upstream")
    with httpx.Client(base_url=gateway, headers=auth, timeout=15) as client:
        yield client


TRAVERSALS = ["../llm-backends/1", "../../api/llm-backends", "x/../../llm-backends/1"]


def _assert_nothing_leaked(response: httpx.Response) -> None:
    assert SECRET_URL not in response.text and "hidden-upstream" not in response.text
    assert "llm_backends" not in response.text and "backend_type" not in response.text


@pytest.mark.parametrize("name", TRAVERSALS)
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/generate", {"prompt": "hi"}),
        ("/api/chat", {"messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/completions", {"prompt": "hi", "stream": True}),
    ],
)
def test_a_traversing_model_name_is_just_an_unknown_model(http, path, body, name):
    response = http.post(path, json={"model": name, **body})
    assert response.status_code in (400, 404), response.text
    _assert_nothing_leaked(response)
    assert "model" in response.text


@pytest.mark.parametrize("name", TRAVERSALS)
def test_show_with_a_traversing_name_is_an_unknown_model(http, name):
    response = http.post("/api/show", json={"model": name})
    assert response.status_code in (400, 404), response.text
    _assert_nothing_leaked(response)


@pytest.mark.parametrize("raw", ["..%2Fllm-backends%2F1", "..%2F..%2Fapi%2Fllm-backends", "%2E%2E%2Fllm-backends%2F1"])  # fmt: skip
def test_a_models_url_with_encoded_slashes_is_an_unknown_model(http, raw):
    response = http.get(f"/v1/models/{raw}")
    assert response.status_code in (400, 404), response.text
    _assert_nothing_leaked(response)
    assert response.json()["error"]["param"] == "model"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("..", "must not contain '.' or '..' path segments"),
        (".", "must not contain '.' or '..' path segments"),
        ("a/./b", "must not contain '.' or '..' path segments"),
        ("phi\r\nX-Injected: 1", "must not contain control characters"),
        ("phi\x00", "must not contain control characters"),
        ("phi\x85", "must not contain control characters"),
    ],
)
def test_dot_segments_and_control_characters_are_a_400_naming_model(http, name, why):
    for path, body in (("/api/generate", {"prompt": "hi"}), ("/v1/completions", {"prompt": "hi"})):
        response = http.post(path, json={"model": name, **body})
        assert response.status_code == 400, response.text
        assert f"model {why}" in response.text
        if path.startswith("/v1/"):
            assert response.json()["error"]["param"] == "model"


def test_a_model_name_with_a_slash_still_routes(http, entry, ollama_url):
    # Ollama names such as library/llama3 or hf.co/org/model hold slashes legitimately.
    entry("hf.co/org/model", "ollama", ollama_url)
    response = http.post("/api/generate", json={"model": "hf.co/org/model", "prompt": "hi", "stream": False})  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["response"] == "Hello, world!"


def test_an_admin_answer_that_is_no_route_is_never_echoed(service_key):
    # An admin (or anything at its address) answering a route look-up with something else.
    state = AdminStandIn()
    state.routes["odd"] = {"detail": "private-field-value", "endpoint_url": SECRET_URL}
    app, _ = admin_app(state)
    with serve_in_thread(app) as admin:
        server = serve_gateway(GatewayConfig(admin_url=admin.url, service_key=service_key))
        try:
            with httpx.Client(base_url=server.url, timeout=15) as client:
                headers = {"Authorization": f"Bearer {service_key}"}
                for path in ("/api/generate", "/v1/completions"):
                    response = client.post(path, json={"model": "odd", "prompt": "hi"}, headers=headers)  # fmt: skip
                    assert response.status_code == 503, response.text
                    assert "private-field-value" not in response.text
                    assert SECRET_URL not in response.text
        finally:
            server.stop()
