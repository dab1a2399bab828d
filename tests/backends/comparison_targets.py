"""Real targets of different speed for comparison tests: the MLX server and a slowed upstream.

Import the fixtures by name. `compared` makes three entries serving the upstream model
`tiny-llama`: `tiny` on the MLX server, with a dead fallback (`tiny-dead`, a free port), and
`tiny-slow` on the test OpenAI-protocol upstream, slowed down (found as "same upstream").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backends.models import LLMBackend
from tests.mlx_server.conftest import (
    ServerProcess,
    start_server,
    tiny_model_path,  # noqa: F401 - fixture
)
from tests.ops.conftest import parse
from tests.upstreams import Behavior

UPSTREAM = "tiny-llama"
SLOW_DELAY = 0.15  # seconds before the slowed upstream's answer starts
SLOW_CHUNK = 0.04  # seconds between its tokens: 25 tokens/s at most


@pytest.fixture(scope="module")
def mlx(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:  # noqa: F811
    server = start_server(["--model", str(tiny_model_path)], tmp_path_factory.mktemp("mlx") / "log")
    yield server
    server.stop()


@pytest.fixture
def slow_upstream(openai_url: str, openai_behavior: Behavior) -> Iterator[Behavior]:
    openai_behavior.reset()
    openai_behavior.delay = SLOW_DELAY
    openai_behavior.chunk_delay = SLOW_CHUNK
    yield openai_behavior
    openai_behavior.reset()


@pytest.fixture
def compared(
    make_entry: Callable[..., LLMBackend],
    mlx: ServerProcess,
    slow_upstream: Behavior,
    openai_url: str,
    dead_url: str,
) -> dict[str, LLMBackend]:
    dead = make_entry("tiny-dead", backend_type="ollama", endpoint_url=dead_url, upstream_model=UPSTREAM)  # fmt: skip
    fast = make_entry("tiny", backend_type="mlx", endpoint_url=mlx.base_url, upstream_model=UPSTREAM, fallbacks=["tiny-dead"])  # fmt: skip
    slow = make_entry("tiny-slow", backend_type="openai", endpoint_url=openai_url, upstream_model=UPSTREAM)  # fmt: skip
    return {"fast": fast, "slow": slow, "dead": dead}


def mlx_counts(server: ServerProcess) -> dict[str, float]:
    """The MLX server's own count of chat calls, their seconds and tokens, from its /metrics."""
    with server.client() as client:
        samples = parse(client.get("/metrics").text)
    chat = (("endpoint", "/v1/chat/completions"), ("status_class", "2xx"))
    return {
        "requests": samples.get(("mlx_requests_total", chat), 0.0),
        "tokens": samples.get(("mlx_tokens_generated_total", (("model", UPSTREAM),)), 0.0),
        "seconds": samples.get(
            ("mlx_request_duration_seconds_sum", (("endpoint", "/v1/chat/completions"),)), 0.0
        ),
    }


def calls_of(run: Any, endpoint_url: str) -> list[Any]:
    from backends.models import ComparisonCall

    return list(ComparisonCall.objects.filter(target__run=run, target__endpoint_url=endpoint_url))


@pytest.fixture
def comparison_queue() -> Iterator[str]:
    """Send this test's tasks to a queue of its own on the shared Redis, deleted after."""
    import redis

    from athena_admin.celery import app
    from tests.backends.celery_workers import REDIS_URL, unique_queue, use_broker

    name = unique_queue()
    use_broker(REDIS_URL)
    saved = app.conf.task_default_queue
    app.conf.task_default_queue = name
    yield name
    app.conf.task_default_queue = saved
    redis.Redis.from_url(REDIS_URL).delete(name)
