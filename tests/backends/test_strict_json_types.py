"""A JSON value of the wrong type is refused with a 400 naming the field, never coerced."""

from typing import Any

import pytest

from backends.models import LLMBackend, RequestSample
from tests.backends.samples import sample

BODY = {
    "model_name": "phi3:mini",
    "backend_type": "ollama",
    "endpoint_url": "http://localhost:11434",
}


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("enabled", "true", "Must be a boolean, not a string."),
        ("enabled", 1, "Must be a boolean, not a number."),
        ("priority", "5", "Must be an integer, not a string."),
        ("priority", True, "Must be an integer, not a boolean."),
        ("priority", 5.5, None),  # a number, but not whole: DRF's own message
        ("temperature_default", "0.5", "Must be a number, not a string."),
        ("model_name", 5, "Must be a string, not a number."),
        ("endpoint_url", ["http://localhost:11434"], "Must be a string, not a list."),
        ("backend_type", {"kind": "ollama"}, "Must be a string, not an object."),
        ("fallbacks", "other", "Must be a list, not a string."),
        ("fallbacks", [5], "Each item: must be a string, not a number."),
    ],
)
def test_a_registry_write_of_the_wrong_type_is_refused_naming_the_field(
    api_as: Any, operator: Any, field: str, value: Any, expected: str | None
) -> None:
    response = api_as(operator).post("/api/llm-backends", {**BODY, field: value}, format="json")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert field in detail
    if expected:
        assert expected in detail
    assert not LLMBackend.objects.exists()


def test_right_types_and_nulls_are_accepted(api_as: Any, operator: Any) -> None:
    body = {**BODY, "enabled": False, "priority": 5, "temperature_default": 0, "description": None}
    response = api_as(operator).post("/api/llm-backends", body, format="json")
    assert response.status_code == 201, response.json()
    assert (response.json()["temperature_default"], response.json()["enabled"]) == (0.0, False)


def test_a_patch_of_the_wrong_type_changes_nothing(
    api_as: Any, operator: Any, make_entry: Any
) -> None:
    entry = make_entry("m", enabled=True)
    response = api_as(operator).patch(
        f"/api/llm-backends/{entry.pk}", {"enabled": "false"}, format="json"
    )
    assert response.status_code == 400
    entry.refresh_from_db()
    assert entry.enabled is True


@pytest.mark.parametrize(
    ("field", "value"),
    [("ok", "true"), ("latency_ms", "12.5"), ("prompt_tokens", 5.0), ("stream", 0), ("model", 7)],
)
def test_a_sample_of_the_wrong_type_is_dropped_naming_the_field(
    api_as: Any, service_key: str, field: str, value: Any
) -> None:
    batch = {"samples": [sample(None), {**sample(None), field: value}]}
    response = api_as(service_key).post("/api/metrics/samples", batch, format="json")
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, field)]
    assert "Must be" in body["errors"][0]["message"] or field == "prompt_tokens"
    assert RequestSample.objects.count() == 1
