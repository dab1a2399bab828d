"""Ops tests reuse the gateway's and the MLX server's real-server fixtures, and capture logs.

``captured_logs`` puts a handler built like production's (routing.logs: JSON lines, the
redacting filter) on the root logger at DEBUG, so a test sees exactly what would be written.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from routing.logs import make_handler
from tests.gateway.conftest import (  # noqa: F401 - fixtures, found by name
    _reset,
    auth,
    entry,
    gateway,
    make_gateway,
)
from tests.mlx_server.conftest import tiny_model_path  # noqa: F401 - fixture


class CapturedLogs:
    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    @property
    def text(self) -> str:
        return self._stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        """Every line written so far, parsed (a line that is not JSON fails the test)."""
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@pytest.fixture
def captured_logs() -> Iterator[CapturedLogs]:
    stream = io.StringIO()
    handler = make_handler(stream, service="test", fmt="json")
    root = logging.getLogger()
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield CapturedLogs(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)


def scrape(url: str, **kwargs: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET url/metrics and return {(sample name, sorted labels): value}."""
    response = httpx.get(f"{url}/metrics", timeout=10, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The value of the one sample with this name and these labels (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def series(samples: dict[Any, float], name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]
