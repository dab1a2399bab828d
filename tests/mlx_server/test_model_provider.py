"""Models by folder name or alias from --models-dir, loaded on use, LRU-unloaded over budget."""

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import ServerProcess, start_server


@pytest.fixture(scope="module")
def models_dir(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with two copies of the tiny model and one folder that is not a model."""
    root = tmp_path_factory.mktemp("models")
    for name in ("alpha", "beta"):
        shutil.copytree(tiny_model_path, root / name)
    (root / "notes").mkdir()
    return root


@pytest.fixture(scope="module")
def budget_server(
    models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Room for one tiny model only (it is ~0.4 MB), plus an alias."""
    running = start_server(
        [
            "--models-dir",
            str(models_dir),
            "--alias",
            f"short={models_dir / 'beta'}",
            "--memory-budget-gb",
            str(0.6e6 / 1024**3),
        ],
        tmp_path_factory.mktemp("p") / "log",
    )
    yield running
    running.stop()


def generate(http: httpx.Client, model: str) -> httpx.Response:
    return http.post(
        "/api/generate",
        json={"model": model, "prompt": "hi", "stream": False, "options": {"num_predict": 2}},
    )


def test_it_lists_model_folders_and_aliases(budget_server: ServerProcess) -> None:
    with budget_server.client() as http:
        ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
        assert ids == ["alpha", "beta", "short"]
        assert http.get("/health").json()["models_loaded"] == []


def test_it_loads_on_first_use_and_logs_it(budget_server: ServerProcess) -> None:
    with budget_server.client() as http:
        assert generate(http, "alpha").status_code == 200
        assert http.get("/health").json()["models_loaded"] == ["alpha"]
    assert "loading model alpha" in budget_server.log()


def test_it_unloads_the_least_recently_used_model_over_budget(budget_server: ServerProcess) -> None:
    with budget_server.client() as http:
        assert generate(http, "alpha").status_code == 200
        assert generate(http, "beta").status_code == 200
        assert http.get("/health").json()["models_loaded"] == ["beta"]
        assert [m["name"] for m in http.get("/api/ps").json()["models"]] == ["beta"]
    assert "unloading alpha to stay under the memory budget" in budget_server.log()


def test_it_resolves_an_alias_to_the_same_loaded_model(budget_server: ServerProcess) -> None:
    with budget_server.client() as http:
        assert generate(http, "beta").status_code == 200
        response = generate(http, "short")
        assert response.status_code == 200
        assert response.json()["model"] == "short"
        assert http.get("/health").json()["models_loaded"] == ["beta"]


def test_it_accepts_an_ollama_latest_tag(budget_server: ServerProcess) -> None:
    with budget_server.client() as http:
        assert generate(http, "beta:latest").status_code == 200


def test_it_finds_a_model_folder_added_after_start(
    budget_server: ServerProcess, models_dir: Path
) -> None:
    shutil.copytree(models_dir / "alpha", models_dir / "gamma")
    with budget_server.client() as http:
        assert "gamma" in [m["name"] for m in http.get("/api/tags").json()["models"]]
        started = time.monotonic()
        assert generate(http, "gamma").status_code == 200
        assert time.monotonic() - started < 30


def test_it_answers_500_for_a_model_that_fails_to_load_and_keeps_serving(
    budget_server: ServerProcess, models_dir: Path
) -> None:
    broken = models_dir / "broken"
    shutil.copytree(models_dir / "alpha", broken)  # a llama mlx-lm can run, with bad weights
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not weights")
    try:
        with budget_server.client() as http:
            response = http.post(
                "/v1/completions", json={"model": "broken", "prompt": "hi", "max_tokens": 2}
            )
            assert response.status_code == 500
            error = response.json()["error"]
            assert "broken" in error["message"] and error["type"] == "server_error"
            assert generate(http, "alpha").status_code == 200
    finally:
        shutil.rmtree(broken)


@pytest.mark.parametrize(
    ("model_type", "path", "body"),
    [
        ("no-such-architecture", "/v1/completions", {"prompt": "hi", "max_tokens": 2}),
        # A dedicated embedding model (mlx-embeddings' kind): not an mlx-lm language model.
        ("bert", "/v1/embeddings", {"input": "hi"}),
        ("bert", "/api/embed", {"input": "hi"}),
    ],
)
def test_a_model_mlx_lm_cannot_run_is_a_400_naming_it(
    budget_server: ServerProcess, models_dir: Path, model_type: str, path: str, body: dict
) -> None:
    folder = models_dir / f"unsupported-{model_type}"
    folder.mkdir()
    (folder / "config.json").write_text(f'{{"model_type": "{model_type}"}}')
    (folder / "model.safetensors").write_bytes(b"not read")
    try:
        with budget_server.client() as http:
            response = http.post(path, json={"model": folder.name, **body})
            assert response.status_code == 400, response.text
            text = response.text
            assert folder.name in text and model_type in text and "mlx-lm cannot run" in text
            assert generate(http, "alpha").status_code == 200
    finally:
        shutil.rmtree(folder)
