"""GET /metrics on a live MLX server: request counts, and the engine's queue and batch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlx_server.app import create_app
from mlx_server.settings import ServerSettings
from tests.mlx_server.conftest import ServerProcess, start_server
from tests.ops.conftest import scrape, value

MODEL = "tiny-llama"


@pytest.fixture(scope="module")
def mlx(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("mlx-metrics") / "server.log"
    server = start_server(["--model", str(tiny_model_path)], log)
    yield server
    server.stop()


def test_requests_tokens_queue_depth_and_batch_size_are_exported(mlx):
    with mlx.client() as client:
        for _ in range(2):
            body = {"model": MODEL, "prompt": "hello", "max_tokens": 4, "temperature": 0}
            assert client.post("/v1/completions", json=body).status_code == 200
        assert client.post("/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": 3}}).status_code == 200  # fmt: skip
    samples = scrape(mlx.base_url)
    assert value(samples, "mlx_requests_total", endpoint="/v1/completions", status_class="2xx") == 2
    assert value(samples, "mlx_requests_total", endpoint="/api/generate", status_class="2xx") == 1
    assert value(samples, "mlx_request_duration_seconds_count", endpoint="/v1/completions") == 2
    assert value(samples, "mlx_request_duration_seconds_bucket", endpoint="/v1/completions", le="+Inf") == 2  # fmt: skip
    assert ("mlx_queue_depth", (("model", MODEL),)) in samples
    assert value(samples, "mlx_queue_depth", model=MODEL) == 0  # nothing waiting now
    assert ("mlx_batch_size", (("model", MODEL),)) in samples
    assert value(samples, "mlx_tokens_generated_total", model=MODEL) >= 2 * 4 + 1
    assert value(samples, "mlx_sequences_completed_total", model=MODEL) == 3
    steps = value(samples, "mlx_decode_steps_total", model=MODEL)
    assert steps > 0 and value(samples, "mlx_batch_sequences_total", model=MODEL) >= steps
    assert value(samples, "mlx_models_loaded") == 1
    assert value(samples, "mlx_max_batch_size") == 16

    with mlx.client() as client:
        client.post("/v1/completions", json={"model": MODEL, "prompt": "again", "max_tokens": 2})
    assert value(scrape(mlx.base_url), "mlx_requests_total", endpoint="/v1/completions", status_class="2xx") == 3  # fmt: skip


async def _get_metrics(settings: ServerSettings, host: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(settings), client=(host, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://mlx") as client:
        return await client.get("/metrics")


async def test_a_scrape_from_another_host_is_refused_unless_public(tiny_model_path):
    settings = ServerSettings(model_paths=(tiny_model_path,))
    refused = await _get_metrics(settings, "203.0.113.7")
    assert refused.status_code == 403
    assert "mlx_" not in refused.text
    assert (await _get_metrics(settings, "127.0.0.1")).status_code == 200
    public = ServerSettings(model_paths=(tiny_model_path,), metrics_public=True)
    assert (await _get_metrics(public, "203.0.113.7")).status_code == 200
