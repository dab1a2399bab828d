"""discover_models against real servers on 127.0.0.1: Ollama, OpenAI, MLX and bad ones."""

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from backends.models import LLMBackend
from tests.upstreams import Behavior, ollama_app, openai_app, serve_in_thread

pytestmark = pytest.mark.django_db
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ollama_url() -> Iterator[str]:
    behavior = Behavior(models=("phi3:mini", "llama3.2:latest"))
    with serve_in_thread(ollama_app(behavior)) as server:
        yield server.url


@pytest.fixture(scope="module")
def openai_url() -> Iterator[str]:
    with serve_in_thread(openai_app(Behavior(models=("qwen2.5-7b-instruct", "gpt-oss")))) as s:
        yield s.url


def _mlx_like_app() -> Starlette:
    """What Athena's MLX server answers: Ollama's /api/version too, but /health says mlx."""

    async def version(request: Request) -> Response:
        return JSONResponse({"version": "0.6.3"})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "backend": "mlx"})

    async def models(request: Request) -> Response:
        data = [{"id": "phi3-mini-4bit", "object": "model", "created": 0, "owned_by": "mlx"}]
        return JSONResponse({"object": "list", "data": data})

    return Starlette(
        routes=[
            Route("/api/version", version),
            Route("/health", health),
            Route("/v1/models", models),
        ]
    )


def _web_page_app() -> Starlette:
    """A server that is not an LLM backend: a web page at every path, or a redirect."""

    async def page(request: Request) -> Response:
        return HTMLResponse("<html><body>Router admin</body></html>")

    async def moved(request: Request) -> Response:
        return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=302)

    return Starlette(routes=[Route("/moved/{rest:path}", moved), Route("/{rest:path}", page)])


@pytest.fixture(scope="module")
def mlx_url() -> Iterator[str]:
    with serve_in_thread(_mlx_like_app()) as server:
        yield server.url


@pytest.fixture(scope="module")
def web_url() -> Iterator[str]:
    with serve_in_thread(_web_page_app()) as server:
        yield server.url


@pytest.fixture
def dead_url() -> str:
    """A port nothing listens on: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def discover(*args: str) -> str:
    out = StringIO()
    call_command("discover_models", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_it_lists_an_ollama_servers_models(ollama_url: str) -> None:
    output = discover(ollama_url)
    assert output.splitlines() == [
        f"{ollama_url} (ollama) serves 2 model(s):",
        "  llama3.2:latest  [new]",
        "  phi3:mini  [new]",
    ]
    assert not LLMBackend.objects.exists()


def test_it_lists_an_openai_compatible_servers_models(openai_url: str) -> None:
    output = discover(openai_url)
    assert f"{openai_url} (openai) serves 2 model(s):" in output
    assert "  gpt-oss  [new]" in output
    assert "  qwen2.5-7b-instruct  [new]" in output


def test_it_tells_athenas_mlx_server_apart_from_ollama(mlx_url: str) -> None:
    output = discover(mlx_url)
    assert output.splitlines() == [f"{mlx_url} (mlx) serves 1 model(s):", "  phi3-mini-4bit  [new]"]


def test_a_given_type_skips_detection(openai_url: str) -> None:
    assert f"{openai_url} (mlx) serves 2 model(s):" in discover(openai_url, "--type", "mlx")


def test_it_shows_which_models_are_already_in_the_registry(
    ollama_url: str, make_entry: Callable[..., LLMBackend]
) -> None:
    make_entry("phi3:mini-classify", endpoint_url=ollama_url + "/", upstream_model="phi3:mini")
    make_entry("llama3.2:latest", endpoint_url="http://10.0.0.9:11434")  # another machine
    output = discover(ollama_url)
    assert "  phi3:mini  [in registry as phi3:mini-classify]" in output
    assert "  llama3.2:latest  [new]" in output


def test_create_adds_entries_for_the_new_models(
    ollama_url: str, make_entry: Callable[..., LLMBackend]
) -> None:
    make_entry("phi3:mini", endpoint_url=ollama_url)
    output = discover(ollama_url, "--create", "--prefix", "lab/")
    assert "created lab/llama3.2:latest" in output
    assert "skipped phi3:mini: already served by phi3:mini" in output
    entry = LLMBackend.objects.get(model_name="lab/llama3.2:latest")
    assert (entry.backend_type, entry.endpoint_url, entry.upstream_model) == (
        "ollama",
        ollama_url,
        "llama3.2:latest",
    )
    assert discover(ollama_url, "--create", "--prefix", "lab/").count("skipped") == 2
    assert LLMBackend.objects.count() == 2


def test_create_skips_a_name_another_endpoint_already_uses(
    openai_url: str, make_entry: Callable[..., LLMBackend]
) -> None:
    make_entry("gpt-oss", endpoint_url="http://10.0.0.9:11434")
    output = discover(openai_url, "--create")
    assert "skipped gpt-oss: the name 'gpt-oss' is taken by another entry" in output
    assert "created qwen2.5-7b-instruct" in output
    assert LLMBackend.objects.get(model_name="qwen2.5-7b-instruct").backend_type == "openai"


def _fails(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        discover(*args)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_refused_port_is_one_clear_error(dead_url: str) -> None:
    assert _fails(dead_url) == f"{dead_url}/api/version: cannot connect (connection refused)"


def test_a_server_that_never_answers_times_out(silent_url: str) -> None:
    message = _fails(silent_url, "--timeout", "0.3")
    assert message == f"{silent_url}/api/version: no answer within 0.3 s"


def test_a_server_that_is_not_an_llm_backend_is_named_so(web_url: str) -> None:
    assert "not an LLM server" in _fails(web_url)
    assert "not an Ollama server" in _fails(web_url, "--type", "ollama")
    assert "not an OpenAI-compatible server" in _fails(web_url, "--type", "openai")


def test_redirects_are_not_followed(web_url: str) -> None:
    message = _fails(web_url + "/moved", "--type", "openai")
    assert "redirected (302) to http://169.254.169.254/latest/meta-data/" in message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254", "is never allowed"),
        ("http://8.8.8.8:11434", "outside the allowed networks"),
        ("file:///etc/passwd", "must start with http:// or https://"),
    ],
)
def test_a_disallowed_url_is_refused_before_any_request(url: str, reason: str) -> None:
    message = _fails(url)
    assert message.startswith(f"{url}: not allowed:")
    assert reason in message


def test_the_command_line_prints_one_line_and_no_traceback(dead_url: str) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "athena_admin.settings"}
    done = subprocess.run(
        [sys.executable, "manage.py", "discover_models", dead_url, "--timeout", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    # System check warnings may come first (they depend on the environment); the error is
    # the last line.
    assert done.stderr.strip().splitlines()[-1] == (
        f"CommandError: {dead_url}/api/version: cannot connect (connection refused)"
    )
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
