"""Real Celery workers for tests: in a thread, or as a process we can SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from django.db import connection

from tests.upstreams.runner import bind_free_socket

REPO = Path(__file__).resolve().parents[2]
# The shared Redis (never stopped by tests); each test gets its own queue on it.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def wait_until(check: Callable[[], Any], *, timeout: float = 30.0, every: float = 0.1) -> Any:
    """Poll until check() is truthy; fail with what it last returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {check}")
        time.sleep(every)


def use_broker(url: str) -> None:
    """Point the in-process app (the one tests send with) at a broker."""
    from athena_admin.celery import app

    if app.conf.broker_url != url:
        app.conf.broker_url = url
        app._after_fork()  # drop connection pools made for the old broker


def unique_queue() -> str:
    return f"athena-test-{uuid.uuid4().hex[:12]}"


def worker_database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class WorkerProcess:
    """`celery -A athena_admin worker` against the test database, one queue, solo pool."""

    def __init__(self, *, broker: str, queue: str, log: Path, env: dict[str, str] | None = None):
        self.log = log
        self._file = log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "athena_admin",
                "worker",
                "--pool=solo",
                "-Q",
                queue,
                "-l",
                "INFO",
                "--without-mingle",
                "--without-gossip",
                "-n",
                f"{queue}-{uuid.uuid4().hex[:6]}@%h",
            ],  # fmt: skip
            cwd=REPO,
            stdout=self._file,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "DATABASE_URL": worker_database_url(),
                "ATHENA_DB_CONN_MAX_AGE": "0",
                "REDIS_URL": broker,
                "ATHENA_CELERY_QUEUE": queue,
                "ATHENA_CELERY_VISIBILITY_TIMEOUT": "3",
                "ATHENA_CELERY_RESTORE_INTERVAL": "1",
                "PYTHONPATH": str(REPO),
                **(env or {}),
            },
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_until(lambda: b" ready." in self.log.read_bytes(), timeout=timeout)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._file.close()


@contextmanager
def worker_process(**kwargs: Any) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(**kwargs)
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


class ThrowawayRedis:
    """A redis-server of our own on a free port, which a test may kill and restart."""

    def __init__(self, tmp: Path) -> None:
        self.binary = shutil.which("redis-server") or "redis-server"
        self.tmp = tmp
        with bind_free_socket() as sock:
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), timeout=10)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
