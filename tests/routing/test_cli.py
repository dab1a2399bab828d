import os
import subprocess
import sys
from pathlib import Path

from tests.routing.conftest import target

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ADMIN_API_URL", "ATHENA_"))}
    return subprocess.run(
        [sys.executable, "-m", "routing", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**base, **env},
        timeout=30,
    )


def test_generate_streams_the_answer_to_the_terminal(tmp_path, ollama_url):
    routes = tmp_path / "routes.json"
    routes.write_text(
        f'{{"routes": [{{"model": "m", "targets": [{{"backend_type": "ollama", "endpoint_url": "{ollama_url}", "upstream_model": "llama3.2"}}]}}]}}'
    )
    out = run_cli(
        "generate",
        "m",
        "Why is the sky blue?",
        "--temperature",
        "0",
        ATHENA_ROUTES_FILE=str(routes),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "Hello, world!\n"
    assert "[ollama " in out.stderr and "llama3.2" in out.stderr and "4 tokens" in out.stderr


def test_generate_reports_a_routing_error_without_a_traceback(dead_url):
    out = run_cli("generate", "m", "hi", ADMIN_API_URL=dead_url, ATHENA_DEFAULT_OLLAMA_URL=dead_url)
    assert out.returncode == 1
    assert (
        "error: all 1 targets failed for model 'm'" in out.stderr and "Traceback" not in out.stderr
    )
    assert "admin unavailable" in out.stderr  # the outage is logged


def test_routes_shows_each_chain_with_health(admin_state, admin_url, ollama_url, openai_url):
    admin_state.set_route(
        "llama3.1:8b",
        target("mlx", openai_url, "mlx-llama", health="healthy"),
        target("ollama", ollama_url, "llama3.1:8b", health="down"),
    )
    out = run_cli("routes", ADMIN_API_URL=admin_url)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == [
        "MODEL",
        "#",
        "BACKEND",
        "ENDPOINT",
        "UPSTREAM",
        "MODEL",
        "HEALTH",
        "SOURCE",
    ]
    assert lines[1].split() == [
        "llama3.1:8b",
        "1",
        "mlx",
        openai_url,
        "mlx-llama",
        "healthy",
        "admin",
    ]
    assert lines[2].split() == ["2", "ollama", ollama_url, "llama3.1:8b", "down", "admin"]
