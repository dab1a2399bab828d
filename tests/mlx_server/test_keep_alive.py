"""keep_alive: durations, 0 unloads after the request, negative keeps the model for ever."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from mlx_server.errors import InvalidRequest
from mlx_server.params import keep_alive

from .conftest import MODEL_NAME, ServerProcess, start_server


@pytest.fixture(scope="module")
def ka_server(
    tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    running = start_server(["--model", str(tiny_model_path)], tmp_path_factory.mktemp("k") / "log")
    yield running
    running.stop()


def expires_in_s(http: httpx.Client) -> float | None:
    models = http.get("/api/ps").json()["models"]
    if not models:
        return None
    expires = datetime.fromisoformat(models[0]["expires_at"].replace("Z", "+00:00"))
    return (expires - datetime.now(UTC)).total_seconds()


def wait_unloaded(http: httpx.Client) -> bool:
    for _ in range(100):
        if not http.get("/health").json()["models_loaded"]:
            return True
        time.sleep(0.02)
    return False


def test_it_unloads_after_the_request_when_keep_alive_is_zero(ka_server: ServerProcess) -> None:
    with ka_server.client() as http:
        body = http.post(
            "/api/generate",
            json={
                "model": MODEL_NAME,
                "prompt": "hi",
                "stream": False,
                "keep_alive": 0,
                "options": {"num_predict": 3},
            },
        ).json()
        assert body["done"] is True
        assert wait_unloaded(http)
        assert http.get("/api/ps").json()["models"] == []


def test_it_keeps_a_model_for_the_requested_duration(ka_server: ServerProcess) -> None:
    with ka_server.client() as http:
        http.post("/api/generate", json={"model": MODEL_NAME, "keep_alive": "10m"})
        remaining = expires_in_s(http)
        assert remaining is not None and 590 < remaining <= 600
        http.post("/api/chat", json={"model": MODEL_NAME, "messages": [], "keep_alive": 30})
        remaining = expires_in_s(http)
        assert remaining is not None and 20 < remaining <= 30


def test_it_keeps_a_model_for_ever_when_keep_alive_is_negative(ka_server: ServerProcess) -> None:
    with ka_server.client() as http:
        http.post("/api/generate", json={"model": MODEL_NAME, "keep_alive": -1})
        remaining = expires_in_s(http)
        assert remaining is not None and remaining > 100 * 365 * 86400


def test_it_unloads_on_an_empty_prompt_with_keep_alive_zero(ka_server: ServerProcess) -> None:
    with ka_server.client() as http:
        http.post("/api/generate", json={"model": MODEL_NAME})
        body = http.post("/api/generate", json={"model": MODEL_NAME, "keep_alive": 0}).json()
        assert body["done_reason"] == "unload"
        assert wait_unloaded(http)


def test_it_reloads_an_unloaded_model_on_the_next_request(ka_server: ServerProcess) -> None:
    with ka_server.client() as http:
        http.post("/api/generate", json={"model": MODEL_NAME, "keep_alive": 0})
        assert wait_unloaded(http)
        body = http.post(
            "/api/generate",
            json={
                "model": MODEL_NAME,
                "prompt": "hi",
                "stream": False,
                "options": {"num_predict": 2},
            },
        ).json()
        assert body["eval_count"] == 2 and body["load_duration"] > 0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5m", 300.0),
        ("30s", 30.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        (0, 0.0),
        ("-1", -1.0),
        (-1, -1.0),
        ("-5m", -300.0),
        (12.5, 12.5),
        (None, None),
    ],
)
def test_it_parses_keep_alive_durations(value: object, seconds: float | None) -> None:
    assert keep_alive(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", True, [], "5x"])
def test_it_rejects_unparseable_keep_alive(value: object) -> None:
    with pytest.raises(InvalidRequest) as raised:
        keep_alive(value)
    assert raised.value.param == "keep_alive"
