"""Start a test server on a free 127.0.0.1 port: in a thread (tests) or a process (benchmarks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

__all__ = ["RunningServer", "serve_in_subprocess", "serve_in_thread"]

_REPO = Path(__file__).resolve().parents[2]


class RunningServer:
    """A started server: ``url`` to call, ``stop()`` (or ``with``) to end it."""

    def __init__(self, url: str, stop: Callable[[], None]) -> None:
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self._stop = stop

    def stop(self) -> None:
        self._stop()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bind_free_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _config(app: Any, **kwargs: Any) -> uvicorn.Config:
    return uvicorn.Config(app, log_level="critical", access_log=False, lifespan="off", **kwargs)


def serve_in_thread(app: Any, *, http: str = "h11") -> RunningServer:
    """Run an ASGI app with uvicorn in a daemon thread; return once it accepts connections."""
    sock = bind_free_socket()
    server = uvicorn.Server(_config(app, http=http, timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.005)
    port = sock.getsockname()[1]

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()

    return RunningServer(f"http://127.0.0.1:{port}", stop)


def serve_in_subprocess(kind: str, *args: str) -> RunningServer:
    """Run ``python -m tests.upstreams KIND`` in its own process (its own event loop and CPU)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.upstreams", kind, "--port", "0", *args],
        cwd=_REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(_REPO)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"test server {kind} did not start: {line!r}")

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()

    return RunningServer(line.split(" ", 1)[1], stop)
