"""GET /api/route/<model>: the ordered targets a router tries."""

from typing import Any

import pytest
from django.test import override_settings


@pytest.fixture
def client(api_as: Any, service_key: str) -> Any:
    return api_as(service_key)


def test_a_single_entry_is_one_target_with_its_settings(client: Any, make_entry: Any) -> None:
    entry = make_entry(
        "phi3:mini-classify", upstream_model="phi3:mini", timeout_seconds=30, temperature_default=0
    )
    response = client.get("/api/route/phi3:mini-classify")
    assert response.status_code == 200
    assert response.json() == {
        "model": "phi3:mini-classify",
        "targets": [
            {
                "entry_id": entry.pk,
                "model_name": "phi3:mini-classify",
                "backend_type": "ollama",
                "endpoint_url": "http://127.0.0.1:11434",
                "upstream_model": "phi3:mini",
                "timeout_seconds": 30,
                "first_token_timeout_seconds": None,
                "max_tokens": 2048,
                "temperature_default": 0.0,
                "health": "unknown",
            }
        ],
    }


def test_a_first_token_deadline_reaches_the_route(client: Any, make_entry: Any) -> None:
    make_entry("phi3:mini", timeout_seconds=30, first_token_timeout_seconds=5)
    (target,) = client.get("/api/route/phi3:mini").json()["targets"]
    assert (target["timeout_seconds"], target["first_token_timeout_seconds"]) == (30, 5)


@override_settings(ATHENA_DEFAULT_OLLAMA_URL="http://192.168.1.9:11434")
def test_auto_without_a_chain_is_mlx_then_the_default_ollama(client: Any, make_entry: Any) -> None:
    make_entry("llama3.1:8b", backend_type="auto", endpoint_url="http://127.0.0.1:11435")
    targets = client.get("/api/route/llama3.1:8b").json()["targets"]
    assert [(t["backend_type"], t["endpoint_url"]) for t in targets] == [
        ("mlx", "http://127.0.0.1:11435"),
        ("ollama", "http://192.168.1.9:11434"),
    ]


def test_auto_with_a_chain_uses_the_chain_not_the_default(client: Any, make_entry: Any) -> None:
    make_entry("phi3:gguf", upstream_model="phi3:mini", endpoint_url="http://10.0.0.2:11434")
    make_entry(
        "phi3",
        backend_type="auto",
        endpoint_url="http://127.0.0.1:11435",
        upstream_model="mlx-community/Phi-3-mini-4k-instruct-4bit",
        fallbacks=["phi3:gguf"],
    )
    targets = client.get("/api/route/phi3").json()["targets"]
    assert [(t["backend_type"], t["endpoint_url"], t["upstream_model"]) for t in targets] == [
        ("mlx", "http://127.0.0.1:11435", "mlx-community/Phi-3-mini-4k-instruct-4bit"),
        ("ollama", "http://10.0.0.2:11434", "phi3:mini"),
    ]


def test_chains_are_followed_in_order_and_skip_disabled_entries(
    client: Any, make_entry: Any
) -> None:
    make_entry("d", endpoint_url="http://10.0.0.4:1")
    make_entry("c", endpoint_url="http://10.0.0.3:1", enabled=False)
    make_entry("b", endpoint_url="http://10.0.0.2:1", fallbacks=["d"])
    make_entry("a", endpoint_url="http://10.0.0.1:1", fallbacks=["c", "b"])
    targets = client.get("/api/route/a").json()["targets"]
    assert [t["model_name"] for t in targets] == ["a", "b", "d"]


def test_a_disabled_or_unknown_model_is_a_404(client: Any, make_entry: Any) -> None:
    make_entry("off", enabled=False)
    for name in ("off", "never-heard-of"):
        response = client.get(f"/api/route/{name}")
        assert response.status_code == 404
        assert response.json() == {"detail": f"No backend configured for model '{name}'"}


def test_model_names_with_slashes_resolve(client: Any, make_entry: Any) -> None:
    make_entry("mlx-community/Phi-3-mini-4k-instruct-4bit", backend_type="mlx")
    response = client.get("/api/route/mlx-community/Phi-3-mini-4k-instruct-4bit")
    assert response.json()["model"] == "mlx-community/Phi-3-mini-4k-instruct-4bit"


def test_an_unchanged_route_costs_a_304(client: Any, make_entry: Any) -> None:
    entry = make_entry("m")
    first = client.get("/api/route/m")
    etag = first.headers["ETag"]
    again = client.get("/api/route/m", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""
    entry.timeout_seconds = 99
    entry.save()
    changed = client.get("/api/route/m", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag


def test_routes_lists_every_enabled_model(client: Any, make_entry: Any) -> None:
    make_entry("a")
    make_entry("b", enabled=False)
    make_entry("c", backend_type="mlx", endpoint_url="http://127.0.0.1:11435")
    response = client.get("/api/routes")
    assert [r["model"] for r in response.json()["routes"]] == ["a", "c"]
    assert client.get("/api/routes", HTTP_IF_NONE_MATCH=response.headers["ETag"]).status_code == 304
