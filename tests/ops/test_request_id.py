"""A request id follows a request: client -> gateway -> router -> MLX server, in every log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.mlx_server.conftest import ServerProcess, start_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def mlx_json_logs(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:  # fmt: skip
    """An MLX server logging JSON lines, as in production."""
    log = tmp_path_factory.mktemp("mlx-json") / "server.log"
    server = start_server(["--model", str(tiny_model_path)], log, env={"ATHENA_LOG_FORMAT": "json"})
    yield server
    server.stop()


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_the_gateway_and_the_mlx_server_log_the_same_request_id(gateway, auth, entry, mlx_json_logs, captured_logs):  # fmt: skip
    entry("tiny", "mlx", mlx_json_logs.base_url, upstream_model="tiny-llama", timeout_seconds=30)
    rid = "ops-trace-0001"
    response = httpx.post(
        f"{gateway}/v1/completions",
        json={"model": "tiny", "prompt": "hello", "max_tokens": 3},
        headers={**auth, "X-Request-ID": rid},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == rid

    gateway_lines = [line for line in captured_logs.lines() if line.get("request_id") == rid]
    access = [line for line in gateway_lines if line["logger"] == "athena_admin.gateway.access"]
    assert access and access[0]["msg"] == "POST /v1/completions 200"
    assert access[0]["status"] == 200 and access[0]["model"] == "tiny"

    # Every line the MLX server wrote is JSON; the one for this request carries the same id.
    mlx_lines = _json_lines(mlx_json_logs.log())
    assert mlx_lines and all({"ts", "level", "logger", "msg"} <= set(line) for line in mlx_lines)
    assert {line["service"] for line in mlx_lines} == {"mlx_server"}
    served = [line for line in mlx_lines if line.get("request_id") == rid]
    access = [line for line in served if line["logger"] == "mlx_server.access"]
    assert [line["msg"] for line in access] == ["POST /v1/completions 200"]
    assert access[0]["status"] == 200


def test_each_request_gets_an_id_and_an_unsafe_one_is_replaced(gateway, auth):
    first = httpx.get(f"{gateway}/api/version")
    second = httpx.get(f"{gateway}/api/version")
    assert len(first.headers["x-request-id"]) == 32
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    for unsafe in ("x" * 65, "a b", 'quote"d', "new=line"):
        answer = httpx.get(f"{gateway}/api/version", headers={"X-Request-ID": unsafe})
        assert answer.headers["x-request-id"] != unsafe
        assert len(answer.headers["x-request-id"]) == 32
    refused = httpx.get(f"{gateway}/api/tags", headers={"X-Request-ID": "abc-1"})
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "abc-1"


def test_the_admin_returns_and_logs_the_request_id(live_server, captured_logs):
    response = httpx.get(f"{live_server.url}/api/llm-backends", headers={"X-Request-ID": "adm-7"})
    assert response.status_code in (401, 403)
    assert response.headers["x-request-id"] == "adm-7"
    lines = [line for line in captured_logs.lines() if line["logger"] == "django.request"]
    assert lines and lines[-1]["request_id"] == "adm-7"
