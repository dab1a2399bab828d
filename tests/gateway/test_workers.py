"""`python -m athena_admin.gateway --workers N`: several processes on one port, one /metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
GENERATE = {"model": "llama", "prompt": "hi", "stream": False}


@dataclass
class RunningGateway:
    process: subprocess.Popen[bytes]
    url: str

    def worker_pids(self) -> set[int]:
        """The parent's children that uvicorn spawned (not multiprocessing's resource tracker)."""
        pids = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (stat.parent / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            if ppid == self.process.pid and b"spawn_main" in cmdline:
                pids.add(int(stat.parent.name))
        return pids

    def metrics_dir(self) -> Path:
        """The prometheus_client directory the parent made for this run (from a worker's env)."""
        pid = next(iter(self.worker_pids()))
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        for item in environ:
            if item.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                return Path(item.split(b"=", 1)[1].decode())
        raise AssertionError("the workers have no PROMETHEUS_MULTIPROC_DIR")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=15)


def gateway_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "athena_admin.gateway", *args]


def gateway_env(routes_file: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "ATHENA_ROUTES_FILE": str(routes_file),
        "ATHENA_GATEWAY_OPEN_ON_LOOPBACK": "true",
        **extra,
    }
    env.pop("ADMIN_API_URL", None)  # the routes file only: no admin to ask or ship samples to
    return env


def start_gateway(routes_file: Path, workers: int) -> RunningGateway:
    port = free_port()
    process = subprocess.Popen(
        gateway_command("--port", str(port), "--workers", str(workers)),
        cwd=REPO,
        env=gateway_env(routes_file),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    gateway = RunningGateway(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    # Ready when every worker answers: until then some connections would wait on a worker
    # still importing Django.
    while len(gateway.worker_pids()) < workers or not _answers(gateway.url):
        assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.1)
    return gateway


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/", timeout=2).text == "Ollama is running"
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def routes_file(ollama_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("routes") / "routes.json"
    target = {"backend_type": "ollama", "endpoint_url": ollama_url, "upstream_model": "l"}
    path.write_text(json.dumps({"routes": [{"model": "llama", "targets": [target]}]}))
    return path


@pytest.fixture(scope="module")
def two_workers(routes_file: Path) -> Iterator[RunningGateway]:
    gateway = start_gateway(routes_file, workers=2)
    yield gateway
    if gateway.process.poll() is None:
        gateway.stop()


def _generate_many(url: str, n: int) -> list[int]:
    """POST n generations, each on its own connection, 8 at a time (so both workers accept)."""

    def one(_: int) -> int:
        with httpx.Client(timeout=10) as client:  # a fresh connection: any worker may take it
            return client.post(url + "/api/generate", json=GENERATE).status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def _generated(url: str) -> float:
    """athena_gateway_requests_total for /api/generate, over all label sets, from one scrape."""
    total = 0.0
    for line in httpx.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("athena_gateway_requests_total{") and 'endpoint="/api/generate"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_two_workers_serve_generations_through_the_upstream(two_workers):
    answer = httpx.post(two_workers.url + "/api/generate", json=GENERATE, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["response"] == "Hello, world!"


def test_two_worker_processes_each_answer_requests(two_workers):
    assert len(two_workers.worker_pids()) == 2
    metrics_dir = two_workers.metrics_dir()
    # A worker writes its counter file when it counts its first request: two files, two
    # processes that answered.
    deadline = time.monotonic() + 20
    while len(list(metrics_dir.glob("counter_*.db"))) < 2:
        assert time.monotonic() < deadline, "only one worker answered"
        assert set(_generate_many(two_workers.url, 16)) == {200}
    answered = {int(f.stem.split("_")[1]) for f in metrics_dir.glob("counter_*.db")}
    assert answered == two_workers.worker_pids()


def test_metrics_count_every_workers_requests_whichever_answers_the_scrape(two_workers):
    before = _generated(two_workers.url)
    assert set(_generate_many(two_workers.url, 20)) == {200}
    # Each scrape on a fresh connection: different workers answer them, all with the sum.
    assert [_generated(two_workers.url) - before for _ in range(6)] == [20.0] * 6


def test_sigterm_to_the_parent_stops_every_worker(routes_file):
    gateway = start_gateway(routes_file, workers=2)
    workers = gateway.worker_pids()
    metrics_dir = gateway.metrics_dir()
    assert gateway.stop() == 0
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    assert not metrics_dir.exists()  # this run's metric files go with it


def test_a_worker_that_cannot_start_stops_the_gateway_with_uvicorns_exit_code(tmp_path):
    result = subprocess.run(
        gateway_command("--port", str(free_port()), "--workers", "2"),
        cwd=REPO,
        env=gateway_env(tmp_path / "missing-routes.json"),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 3  # uvicorn's STARTUP_FAILURE, as one process exits
    assert b"missing-routes.json" in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--workers", "0"],
            {},
            "--workers (ATHENA_GATEWAY_WORKERS) must be an integer >= 1, got 0",
        ),  # fmt: skip
        ([], {"ATHENA_GATEWAY_WORKERS": "0"}, "must be an integer >= 1, got 0"),
        (
            [],
            {"ATHENA_GATEWAY_WORKERS": "abc"},
            "ATHENA_GATEWAY_WORKERS must be an integer, got 'abc'",
        ),  # fmt: skip
        (["--workers", "two"], {}, "argument --workers: invalid int value: 'two'"),
    ],
)
def test_a_bad_worker_count_is_refused_with_a_clear_message(routes_file, args, env, message):
    result = subprocess.run(
        gateway_command("--port", str(free_port()), *args),
        cwd=REPO,
        env=gateway_env(routes_file, **env),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
