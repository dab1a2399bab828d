"""Each registry rule, as a user of the API sees it: a 400 naming the field, nothing saved."""

from typing import Any

import pytest

from backends.models import LLMBackend

GOOD = {
    "model_name": "phi3:mini",
    "backend_type": "ollama",
    "endpoint_url": "http://127.0.0.1:11434",
}


@pytest.fixture
def client(api_as: Any, operator: Any) -> Any:
    return api_as(operator)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"backend_type": "vllm"}, "backend_type", "not a backend type"),
        ({"endpoint_url": "http://169.254.169.254"}, "endpoint_url", "never allowed"),
        ({"endpoint_url": "http://2130706433"}, "endpoint_url", "non-standard IP"),
        ({"endpoint_url": "http://u:p@127.0.0.1"}, "endpoint_url", "credentials"),
        ({"endpoint_url": "localhost:11434"}, "endpoint_url", "http://"),
        ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"temperature_default": 2.5}, "temperature_default", "less than or equal to 2"),
        ({"temperature_default": -0.1}, "temperature_default", "greater than or equal to 0"),
        ({"timeout_seconds": 0}, "timeout_seconds", "greater than or equal to 1"),
        ({"timeout_seconds": 3601}, "timeout_seconds", "less than or equal to 3600"),
        ({"first_token_timeout_seconds": 0}, "first_token_timeout_seconds", "greater than or"),
        (
            {"first_token_timeout_seconds": "5"},
            "first_token_timeout_seconds",
            "Must be an integer, not a string.",
        ),
        (
            {"timeout_seconds": 30, "first_token_timeout_seconds": 31},
            "first_token_timeout_seconds",
            "Must be at most timeout_seconds (30), got 31.",
        ),
        (
            {"first_token_timeout_seconds": 61},  # the default timeout_seconds is 60
            "first_token_timeout_seconds",
            "at most timeout_seconds (60)",
        ),
        ({"model_name": "phi3 mini"}, "model_name", "letters, digits"),
        ({"model_name": "modèle"}, "model_name", "letters, digits"),
        ({"model_name": "../etc/passwd"}, "model_name", "letters, digits"),
        ({"model_name": "a//b"}, "model_name", "letters, digits"),
        ({"model_name": "a/../b"}, "model_name", "letters, digits"),
        ({"model_name": ""}, "model_name", "blank"),
        ({"upstream_model": "bad name"}, "upstream_model", "letters, digits"),
        ({"max_tokens": "many"}, "max_tokens", "Must be an integer, not a string."),
        ({"enabled": "perhaps"}, "enabled", "Must be a boolean, not a string."),
        ({"fallbacks": "phi3"}, "fallbacks", "list"),
        ({"fallbacks": ["missing:model"]}, "fallbacks", "No backend configured for model"),
    ],
)
def test_it_rejects_bad_fields_naming_the_field(
    client: Any, change: dict[str, Any], field: str, message: str
) -> None:
    response = client.post("/api/llm-backends", {**GOOD, **change}, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body
    assert message in str(body[field])
    assert body["detail"].startswith(field)
    assert not LLMBackend.objects.exists()


@pytest.mark.parametrize("missing", ["model_name", "backend_type", "endpoint_url"])
def test_it_requires_the_plans_required_fields(client: Any, missing: str) -> None:
    body = {k: v for k, v in GOOD.items() if k != missing}
    response = client.post("/api/llm-backends", body, format="json")
    assert response.status_code == 400
    assert response.json()[missing] == ["This field is required."]


@pytest.mark.parametrize(
    "name", ["phi3:mini", "mlx-community/Phi-3-mini-4k-instruct-4bit", "llama3.1_8b-q4.k"]
)
def test_it_accepts_model_names_with_path_characters(client: Any, name: str) -> None:
    response = client.post("/api/llm-backends", {**GOOD, "model_name": name}, format="json")
    assert response.status_code == 201, response.content
    assert client.get(f"/api/llm-backends/model/{name}").json()["model_name"] == name


def test_upstream_model_defaults_to_the_model_name(client: Any) -> None:
    response = client.post("/api/llm-backends", GOOD, format="json")
    assert response.json()["upstream_model"] == "phi3:mini"


def test_temperature_zero_is_kept_as_zero(client: Any) -> None:
    response = client.post("/api/llm-backends", {**GOOD, "temperature_default": 0}, format="json")
    assert response.json()["temperature_default"] == 0.0


def test_it_rejects_a_fallback_cycle_and_keeps_the_old_chain(client: Any, make_entry: Any) -> None:
    a = make_entry("a")
    b = make_entry("b", fallbacks=["a"])
    make_entry("c", fallbacks=["b"])
    response = client.patch(f"/api/llm-backends/{a.pk}", {"fallbacks": ["c"]}, format="json")
    assert response.status_code == 400
    assert "cycle" in response.json()["fallbacks"][0]
    assert client.get(f"/api/llm-backends/{a.pk}").json()["fallbacks"] == []
    assert client.get(f"/api/llm-backends/{b.pk}").json()["fallbacks"] == ["a"]


def test_it_rejects_falling_back_to_itself(client: Any, make_entry: Any) -> None:
    a = make_entry("a")
    response = client.patch(f"/api/llm-backends/{a.pk}", {"fallbacks": ["a"]}, format="json")
    assert response.status_code == 400
    assert "itself" in response.json()["fallbacks"][0]


def test_a_rejected_update_changes_nothing(client: Any, make_entry: Any) -> None:
    a = make_entry("a", max_tokens=100)
    response = client.put(
        f"/api/llm-backends/{a.pk}",
        {**GOOD, "model_name": "a", "max_tokens": 5, "endpoint_url": "http://8.8.8.8"},
        format="json",
    )
    assert response.status_code == 400
    a.refresh_from_db()
    assert (a.max_tokens, a.endpoint_url) == (100, "http://127.0.0.1:11434")


def test_a_first_token_deadline_is_optional_and_kept_under_the_timeout(client: Any) -> None:
    created = client.post(
        "/api/llm-backends",
        {**GOOD, "timeout_seconds": 30, "first_token_timeout_seconds": None},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["first_token_timeout_seconds"] is None
    url = f"/api/llm-backends/{created.json()['id']}"
    assert client.patch(url, {"first_token_timeout_seconds": 10}, format="json").status_code == 200
    # Lowering the timeout below the deadline is refused, naming the deadline.
    lowered = client.patch(url, {"timeout_seconds": 5}, format="json")
    assert lowered.status_code == 400
    assert "at most timeout_seconds (5)" in str(lowered.json()["first_token_timeout_seconds"])
    entry = LLMBackend.objects.get()
    assert (entry.timeout_seconds, entry.first_token_timeout_seconds) == (30, 10)
