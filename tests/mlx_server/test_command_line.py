"""`python -m mlx_server` flags and environment."""

from pathlib import Path

import httpx
import pytest

from mlx_server.settings import DEFAULT_PORT, from_argv

from .conftest import MODEL_NAME, run_command, start_server


def test_it_refuses_to_start_without_a_model() -> None:
    result = run_command(env={"PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "MLX_MODEL_PATH" in result.stderr


def test_it_refuses_a_model_path_that_does_not_exist(tmp_path: Path) -> None:
    result = run_command("--model", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "not found" in result.stderr


def test_it_defaults_to_port_11435_and_the_env_model(monkeypatch: object, tmp_path: Path) -> None:
    monkeypatch.setenv("MLX_MODEL_PATH", str(tmp_path))  # type: ignore[attr-defined]
    settings = from_argv([])
    assert settings.port == DEFAULT_PORT == 11435
    assert settings.host == "127.0.0.1"
    assert settings.model_paths == (tmp_path,)


def test_it_serves_the_model_named_by_mlx_model_path(tiny_model_path: Path, tmp_path: Path) -> None:
    server = start_server([], tmp_path / "log", env={"MLX_MODEL_PATH": str(tiny_model_path)})
    try:
        assert httpx.get(f"{server.base_url}/v1/models").json()["data"][0]["id"] == MODEL_NAME
    finally:
        server.stop()


def test_it_reads_the_stream_interval_from_the_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLX_STREAM_INTERVAL_MS", raising=False)
    assert from_argv(["--model", str(tmp_path)]).stream_interval_ms == 5.0
    monkeypatch.setenv("MLX_STREAM_INTERVAL_MS", "2.5")
    assert from_argv(["--model", str(tmp_path)]).stream_interval_ms == 2.5
    # 0 (a chunk per token) must not fall back to the default.
    flagged = from_argv(["--model", str(tmp_path), "--stream-interval-ms", "0"])
    assert flagged.stream_interval_ms == 0
