"""A client that goes away stops its generation within a step, streaming or not."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import MODEL_NAME, ServerProcess, start_server

LONG = 1900  # most of the tiny model's 2048-token context: seconds of decoding


@pytest.fixture(scope="module")
def lone_server(
    tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server of its own, so its counters see only this file's requests."""
    running = start_server(["--model", str(tiny_model_path)], tmp_path_factory.mktemp("d") / "log")
    yield running
    running.stop()


def wait_idle(http: httpx.Client, timeout: float = 5.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health: dict[str, object] = http.get("/health").json()
        if health["active_requests"] == 0:
            return health
        time.sleep(0.02)
    raise AssertionError(f"still generating after {timeout}s: {health}")


def test_it_stops_a_non_streaming_generation_when_the_client_leaves(
    lone_server: ServerProcess,
) -> None:
    with lone_server.client() as http:
        http.post("/api/generate", json={"model": MODEL_NAME})  # load first
        before = wait_idle(http)
        with pytest.raises(httpx.ReadTimeout):
            http.post(
                "/v1/completions",
                json={"model": MODEL_NAME, "prompt": "hi", "max_tokens": LONG, "temperature": 0},
                timeout=0.3,
            )
        after = wait_idle(http, timeout=2.0)
    generated = int(after["tokens_generated"]) - int(before["tokens_generated"])  # type: ignore[call-overload]
    assert 0 < generated < LONG
    assert after["requests_cancelled"] == int(before["requests_cancelled"]) + 1  # type: ignore[call-overload]


def test_it_stops_a_stream_when_the_client_leaves(lone_server: ServerProcess) -> None:
    with lone_server.client() as http:
        before = wait_idle(http)
        payload = {
            "model": MODEL_NAME,
            "prompt": "hi",
            "max_tokens": LONG,
            "stream": True,
            "temperature": 0,
        }
        with http.stream("POST", "/v1/completions", json=payload) as response:
            first = next(line for line in response.iter_lines() if line.startswith("data: "))
            assert json.loads(first[6:])["choices"]
        after = wait_idle(http, timeout=2.0)
    generated = int(after["tokens_generated"]) - int(before["tokens_generated"])  # type: ignore[call-overload]
    assert 0 < generated < LONG
    assert after["requests_cancelled"] == int(before["requests_cancelled"]) + 1  # type: ignore[call-overload]
