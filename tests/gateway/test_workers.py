"""`python -m athena_admin.gateway --workers N`: several processes on one port, one /metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.conftest import free_port
from tests.upstreams import AdminStandIn, RunningServer, admin_app, serve_in_thread

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


def admin_gateway_env(admin_url: str) -> dict[str, str]:
    """Routes from the admin only (looked up, cached and aged by each worker's router)."""
    env = {**os.environ, "ADMIN_API_URL": admin_url, "ATHENA_GATEWAY_OPEN_ON_LOOPBACK": "true"}
    env.pop("ATHENA_ROUTES_FILE", None)
    return env


def start_gateway(
    routes_file: Path, workers: int, env: dict[str, str] | None = None
) -> RunningGateway:
    port = free_port()
    process = subprocess.Popen(
        gateway_command("--port", str(port), "--workers", str(workers)),
        cwd=REPO,
        env=env if env is not None else gateway_env(routes_file),
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


def _router_figures(url: str) -> dict[str, float]:
    """The athena_router_* samples of one scrape, by name (``name[model]`` for route ages)."""
    text = httpx.get(url + "/metrics", timeout=5).text
    figures = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("athena_router_"):
                model = sample.labels.get("model")
                figures[f"{sample.name}[{model}]" if model else sample.name] = sample.value
    return figures


def _poll_router_figures(url: str, reached: Callable[[dict[str, float]], bool]) -> dict[str, float]:
    """Scrape until reached(figures) holds: each worker copies its router's figures every 1 s."""
    deadline = time.monotonic() + 10
    while not reached(figures := _router_figures(url)):
        assert time.monotonic() < deadline, f"the router's figures stayed at {figures}"
        time.sleep(0.2)
    return figures


def _pids_that_answered(metrics_dir: Path) -> set[int]:
    """Workers whose counter file holds a request count.

    Every worker writes its counter file at start-up (the router's counters, copied from
    the start), but a request's counter only once it counts one.
    """
    return {
        int(f.stem.split("_")[1])
        for f in metrics_dir.glob("counter_*.db")
        if b"athena_gateway_requests" in f.read_bytes()  # the metric's name, in the file's key
    }


def _until_both_workers_answered(gateway: RunningGateway) -> int:
    """Generate (16 at a time) until both workers counted a request; return how many were sent."""
    metrics_dir = gateway.metrics_dir()
    sent = 0
    deadline = time.monotonic() + 20
    while len(_pids_that_answered(metrics_dir)) < 2:
        assert time.monotonic() < deadline, "only one worker answered"
        assert set(_generate_many(gateway.url, 16)) == {200}
        sent += 16
    return sent


@pytest.fixture
def admin(ollama_url: str) -> Iterator[tuple[RunningServer, AdminStandIn]]:
    """The admin stand-in, with a route for llama to the test Ollama."""
    app, state = admin_app()
    state.set_route(
        "llama", {"backend_type": "ollama", "endpoint_url": ollama_url, "upstream_model": "l"}
    )
    with serve_in_thread(app) as server:
        yield server, state


def test_router_metrics_combine_every_workers_router(admin, routes_file):
    server, state = admin
    gateway = start_gateway(routes_file, workers=2, env=admin_gateway_env(server.url))
    try:
        sent = _until_both_workers_answered(gateway)
        # Two routers, each with its own cached copy of llama's route and its own look-ups.
        figures = _poll_router_figures(
            gateway.url,
            lambda f: (
                f.get("athena_router_routes_cached") == 2
                and f.get("athena_router_admin_lookups_total") == len(state.lookups)
            ),
        )
        assert len(state.lookups) >= 2
        assert 0 <= figures["athena_router_route_age_seconds[llama]"] < 60
        assert figures["athena_router_route_age_max_seconds"] < 60
        # Samples: both workers' buffers drained to the admin, none dropped.
        _poll_router_figures(
            gateway.url,
            lambda f: f.get("athena_router_samples_buffered") == 0 and len(state.samples) == sent,
        )
        assert figures["athena_router_samples_dropped_total"] == 0

        # The admin now rejects samples (4xx: dropped, not retried), whichever worker sends.
        state.status = 400
        assert set(_generate_many(gateway.url, 20)) == {200}
        _poll_router_figures(gateway.url, lambda f: f["athena_router_samples_dropped_total"] == 20)

        # The route ages while cached (as it does when the admin is down): the alert sees it.
        age = figures["athena_router_route_age_seconds[llama]"]
        later = _poll_router_figures(
            gateway.url, lambda f: f["athena_router_route_age_seconds[llama]"] >= age + 1
        )
        assert later["athena_router_route_age_max_seconds"] >= age + 1
        # Every worker answers a scrape with the same combined counts.
        for _ in range(4):
            assert _router_figures(gateway.url)["athena_router_routes_cached"] == 2
    finally:
        gateway.stop()


def test_two_workers_serve_generations_through_the_upstream(two_workers):
    answer = httpx.post(two_workers.url + "/api/generate", json=GENERATE, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["response"] == "Hello, world!"


def test_two_worker_processes_each_answer_requests(two_workers):
    assert len(two_workers.worker_pids()) == 2
    _until_both_workers_answered(two_workers)
    assert _pids_that_answered(two_workers.metrics_dir()) == two_workers.worker_pids()


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
