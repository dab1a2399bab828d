"""GET /health: fields and types."""

import time

import httpx

from .conftest import MODEL_NAME


def test_it_reports_status_and_queue(client: httpx.Client) -> None:
    client.post("/api/generate", json={"model": MODEL_NAME})
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["backend"] == "mlx"
    assert body["device"] in {"cpu", "gpu"}
    assert body["models_loaded"] == [MODEL_NAME]
    assert isinstance(body["queue_depth"], int) and body["queue_depth"] >= 0
    assert isinstance(body["active_requests"], int)
    assert isinstance(body["tokens_generated"], int)
    assert body["models_available"] == [MODEL_NAME]


def test_it_answers_quickly_when_idle(client: httpx.Client) -> None:
    client.get("/health")
    tic = time.perf_counter()
    assert client.get("/health").status_code == 200
    assert time.perf_counter() - tic < 1.0
