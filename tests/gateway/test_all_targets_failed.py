"""When no target serves a model, the status says why: 503 unreachable, 504 too slow, else 502."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
REQUESTS = (
    ("/api/chat", CHAT),
    ("/v1/chat/completions", CHAT),
    ("/api/generate", {"prompt": "hi"}),
)


@pytest.fixture
def http(gateway, auth):
    with httpx.Client(base_url=gateway, headers=auth, timeout=20) as client:
        yield client


def _error_code(response: httpx.Response) -> str | None:
    error = response.json()["error"]
    return error["code"] if isinstance(error, dict) else None


@pytest.mark.parametrize("stream", [False, True])
def test_every_target_refusing_connections_is_a_503(stream, http, entry, dead_url):
    other_dead = f"http://127.0.0.1:{free_port()}"
    entry("backup", "mlx", other_dead)
    entry("phi", "ollama", dead_url, fallbacks=["backup"])
    # Four calls: the third opens the primary's circuit, so the last one skips it.
    for path, body in (*REQUESTS, REQUESTS[1]):
        response = http.post(path, json={"model": "phi", "stream": stream, **body})
        assert response.status_code == 503, response.text
        assert response.headers["x-athena-backend"] == "none"
        assert "all 2 targets failed for model 'phi'" in response.text
        assert _error_code(response) in (None, "all_targets_failed")


def test_every_target_timing_out_is_a_504(http, entry, openai_url, openai_behavior):
    openai_behavior.delay = 2.0
    entry("backup", "openai", openai_url, timeout_seconds=1)
    entry("phi", "mlx", openai_url, timeout_seconds=1, fallbacks=["backup"])
    for path, body in REQUESTS[:2]:
        response = http.post(path, json={"model": "phi", "stream": False, **body})
        assert response.status_code == 504, response.text
        assert "timed out" in response.text


def test_a_timeout_and_a_refusal_together_are_a_502(
    http, entry, dead_url, openai_url, openai_behavior
):
    openai_behavior.delay = 2.0
    entry("backup", "openai", openai_url, timeout_seconds=1)
    entry("phi", "ollama", dead_url, fallbacks=["backup"])
    for path, body in REQUESTS[:2]:
        response = http.post(path, json={"model": "phi", **body})
        assert response.status_code == 502, response.text
