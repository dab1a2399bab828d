"""Beyond batch + queue capacity the server answers 503 with Retry-After."""

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import MODEL_NAME, ServerProcess, start_server


@pytest.fixture(scope="module")
def small_server(
    tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server that admits 1 sequence in the batch and 1 waiting."""
    running = start_server(
        ["--model", str(tiny_model_path), "--max-batch-size", "1", "--max-queue", "1"],
        tmp_path_factory.mktemp("o") / "log",
    )
    yield running
    running.stop()


def test_it_answers_503_with_retry_after_when_full_and_recovers(
    small_server: ServerProcess,
) -> None:
    payload = {
        "model": MODEL_NAME,
        "prompt": "hi",
        "max_tokens": 1900,
        "stream": True,
        "temperature": 0,
    }
    with small_server.client() as http, contextlib.ExitStack() as streams:
        running = streams.enter_context(http.stream("POST", "/v1/completions", json=payload))
        lines = running.iter_lines()  # keep it: dropping the iterator closes the connection
        next(lines)  # in the batch and producing
        queued = streams.enter_context(http.stream("POST", "/v1/completions", json=payload))
        assert queued.status_code == 200  # headers go out at once; tokens wait for a slot
        health = http.get("/health").json()
        assert (health["active_requests"], health["queue_depth"]) == (2, 1)
        rejected = http.post("/v1/completions", json={**payload, "stream": False})
        assert rejected.status_code == 503
        assert int(rejected.headers["Retry-After"]) >= 1
        error = rejected.json()["error"]
        assert error["code"] == "overloaded" and error["type"] == "server_overloaded"
        ollama = http.post("/api/generate", json={"model": MODEL_NAME, "prompt": "hi"})
        assert ollama.status_code == 503 and "capacity" in ollama.json()["error"]
        assert "Retry-After" in ollama.headers
    # Both streams are closed: their slots free up within a step.
    with small_server.client() as http:
        deadline = time.monotonic() + 5
        while http.get("/health").json()["active_requests"] and time.monotonic() < deadline:
            time.sleep(0.02)
        ok = http.post(
            "/v1/completions", json={"model": MODEL_NAME, "prompt": "hi", "max_tokens": 3}
        )
        assert ok.status_code == 200
