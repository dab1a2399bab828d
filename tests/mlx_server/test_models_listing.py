"""GET /v1/models, /api/tags, /api/ps and POST /api/show."""

import httpx

from .conftest import MODEL_NAME
from .test_ollama_generate import is_rfc3339

DETAILS = {"parent_model", "format", "family", "families", "parameter_size", "quantization_level"}


def test_it_lists_models_openai_style(client: httpx.Client) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    (card,) = body["data"]
    assert card == {
        "id": MODEL_NAME,
        "object": "model",
        "created": card["created"],
        "owned_by": "mlx",
        "capabilities": ["completion", "tools", "embedding"],
    }
    assert isinstance(card["created"], int)
    assert client.get(f"/v1/models/{MODEL_NAME}").json()["id"] == MODEL_NAME


def test_it_lists_tags_ollama_style(client: httpx.Client) -> None:
    (model,) = client.get("/api/tags").json()["models"]
    assert set(model) == {"name", "model", "modified_at", "size", "digest", "details"}
    assert model["name"] == model["model"] == MODEL_NAME
    assert is_rfc3339(model["modified_at"])
    assert isinstance(model["size"], int) and model["size"] > 0
    assert len(model["digest"]) == 64
    assert set(model["details"]) == DETAILS
    assert model["details"]["family"] == "llama"


def test_it_lists_loaded_models_with_expiry(client: httpx.Client) -> None:
    client.post("/api/generate", json={"model": MODEL_NAME})  # load it
    models = client.get("/api/ps").json()["models"]
    (model,) = [m for m in models if m["name"] == MODEL_NAME]
    assert {"name", "model", "size", "digest", "details", "expires_at", "size_vram"} <= set(model)
    assert is_rfc3339(model["expires_at"])
    assert model["size_vram"] == model["size"] > 0


def test_it_shows_model_details_and_template(client: httpx.Client) -> None:
    body = client.post("/api/show", json={"model": MODEL_NAME}).json()
    assert {"modelfile", "parameters", "template", "details", "model_info"} <= set(body)
    assert "<|assistant|>" in body["template"]
    assert body["model_info"]["general.architecture"] == "llama"
    assert body["model_info"]["llama.max_position_embeddings"] == 2048
    assert body["capabilities"] == ["completion", "tools", "embedding"]


def test_it_answers_show_for_an_unknown_model_with_404(client: httpx.Client) -> None:
    response = client.post("/api/show", json={"model": "nope"})
    assert response.status_code == 404
    assert MODEL_NAME in response.json()["error"]
