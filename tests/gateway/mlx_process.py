"""The real MLX server with the tiny model, in its own process, for the gateway's tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.upstreams.fixtures import free_port

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = REPO / "var" / "models" / "tiny-llama"


@contextlib.contextmanager
def running_mlx_server(log_path: Path, *options: str) -> Iterator[str]:
    """Start `python -m mlx_server` on the tiny model (made if missing); yield its URL."""
    if not (TINY_MODEL / "config.json").exists():
        subprocess.run([sys.executable, "scripts/make_tiny_model.py"], cwd=REPO, check=True)
    port = free_port()
    log = log_path.open("wb")
    command = [sys.executable, "-m", "mlx_server", "--model", str(TINY_MODEL), "--port", str(port)]
    process = subprocess.Popen(
        [*command, *options], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "mlx_server exited early"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "mlx_server did not become healthy"
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
