"""deploy/grafana-athena.json queries only metrics the code defines, and covers what it says."""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from athena_admin.gateway.metrics import GatewayMetrics
from athena_admin.metrics import RegistryCollector
from mlx_server.metrics import ServerMetrics
from mlx_server.provider import ModelProvider
from mlx_server.settings import ServerSettings

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-athena.json"
# The series a family exposes, by its type (the Prometheus text format's suffixes).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def _series(families: Iterator[Any]) -> set[str]:
    return {family.name + suffix for family in families for suffix in _SUFFIXES[family.type]}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


@pytest.fixture
def defined_series(db: None, tmp_path: Path) -> set[str]:
    """Every series the gateway, the MLX server and the admin can export, from their code."""
    # With a multiprocess folder the gateway registers its router figures as plain metrics,
    # so every name is there without a router holding routes.
    gateway = GatewayMetrics(lambda: None, multiprocess_dir=str(tmp_path)).registry
    mlx = ServerMetrics(ModelProvider(ServerSettings()), ServerSettings()).registry
    admin = CollectorRegistry(auto_describe=False)
    admin.register(RegistryCollector())
    return _series(gateway.collect()) | _series(mlx.collect()) | _series(admin.collect())


def test_every_metric_the_dashboard_queries_is_defined(
    dashboard: dict[str, Any], defined_series: set[str]
) -> None:
    queried = {
        (title, name)
        for title, expr in _queries(dashboard)
        for name in re.findall(r"\b(?:athena|mlx)_[a-z0-9_]+", expr)
    }
    assert queried
    unknown = sorted((title, name) for title, name in queried if name not in defined_series)
    assert not unknown, unknown


def test_it_charts_what_an_operator_asks_about(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(expr for _, expr in _queries(dashboard))
    for needed in (
        "athena_gateway_requests_total",  # requests
        "athena_upstream_errors_total",  # errors
        "athena_fallbacks_total",  # fallbacks
        "athena_upstream_ttft_seconds_bucket",  # TTFT
        "athena_upstream_completion_tokens_total",  # tokens/s
        "mlx_queue_depth",  # queue depth
        "mlx_batch_size",  # batch size
        "mlx_prompt_cache_hits_total",  # cache hits
        "athena_backend_health",  # the admin's view
    ):
        assert needed in exprs, needed


def test_it_imports_with_a_datasource_chosen_at_import(dashboard: dict[str, Any]) -> None:
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
