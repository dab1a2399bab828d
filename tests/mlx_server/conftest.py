"""Fixtures: the tiny model, and real servers started as subprocesses on free ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jinja2
import pytest
from tokenizers import Tokenizer

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "tiny-llama"


def free_port() -> int:
    """Ask the OS for a port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A running `python -m mlx_server` and how to reach it."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        """Return what the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs: object) -> httpx.Client:
        """Open a client on this server."""
        return httpx.Client(base_url=self.base_url, timeout=30, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        """Stop the server with SIGTERM (SIGKILL if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    args: list[str], log_path: Path, env: dict[str, str] | None = None
) -> ServerProcess:
    """Start the server with extra arguments and wait until /health answers."""
    port = free_port()
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlx_server", "--port", str(port), *args],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not become ready:\n{server.log()}")


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """Build (or reuse) the deterministic tiny model via the project script."""
    result = subprocess.run(
        [sys.executable, "scripts/make_tiny_model.py"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def server(
    tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The shared server: one tiny model, default settings."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    running = start_server(["--model", str(tiny_model_path)], log)
    yield running
    running.stop()


@pytest.fixture
def lone_server(tiny_model_path: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own, for tests that need the engine to themselves."""
    running = start_server(["--model", str(tiny_model_path)], tmp_path / "log")
    yield running
    running.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    """An HTTP client on the shared server."""
    with server.client() as http:
        yield http


@dataclass
class TinyTokenizer:
    """The tiny model's tokenizer and chat template, read straight from its files."""

    tokenizer: Tokenizer
    chat_template: jinja2.Template
    context_length: int

    def count(self, text: str) -> int:
        """Count tokens of a raw prompt, BOS included (what the server feeds the model)."""
        return len(self.tokenizer.encode(text).ids)

    def count_chat(self, messages: list[dict[str, str]]) -> int:
        """Count tokens of a chat rendered with the model's template."""
        rendered = self.chat_template.render(
            messages=messages, add_generation_prompt=True, bos_token="<s>"
        )
        return len(self.tokenizer.encode(rendered, add_special_tokens=False).ids)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_path: Path) -> TinyTokenizer:
    """Load the tokenizer independently of the server's code."""
    config = json.loads((tiny_model_path / "tokenizer_config.json").read_text())
    model_config = json.loads((tiny_model_path / "config.json").read_text())
    return TinyTokenizer(
        tokenizer=Tokenizer.from_file(str(tiny_model_path / "tokenizer.json")),
        chat_template=jinja2.Environment().from_string(config["chat_template"]),
        context_length=model_config["max_position_embeddings"],
    )


def sse_events(lines: list[str]) -> list[str]:
    """Return the payloads of `data:` lines of a server-sent-event stream."""
    return [line[len("data: ") :] for line in lines if line.startswith("data: ")]


def usage_counts(usage: dict[str, object]) -> dict[str, object]:
    """Check OpenAI `usage.prompt_tokens_details` and return the other fields.

    The cached count depends on what the server answered before (its prompt cache): only
    its type and bound are fixed.
    """
    rest = dict(usage)
    details = rest.pop("prompt_tokens_details")
    assert isinstance(details, dict) and set(details) == {"cached_tokens"}
    assert 0 <= details["cached_tokens"] < rest["prompt_tokens"]  # type: ignore[operator]
    return rest


def run_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m mlx_server ARGS` to its end (for flags and settings it must refuse)."""
    return subprocess.run(
        [sys.executable, "-m", "mlx_server", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
