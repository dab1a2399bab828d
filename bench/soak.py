"""Fault-and-soak run: every Athena process under mixed traffic while things break.

    .venv/bin/python bench/soak.py [--minutes 10] [--clients 8] [--keep]

Starts, each on a free 127.0.0.1 port and in its own process: a throwaway PostgreSQL
database (created, migrated, dropped at the end unless --keep), redis-server, the admin
(runserver), a Celery worker and beat on that Redis, the MLX server with the tiny model, two
Ollama-protocol test servers and the gateway. Entries: `soak-mlx` on the MLX server with the
healthy fallback `soak-fallback` on test server B, and `soak-ollama` on test server A.

Three hostile upstreams (bench/hostile_upstream.py) back `soak-shapes` (OpenAI) and
`soak-shapes-ollama` (valid JSON of the wrong shape), `soak-oversized` (200 MiB answers,
a bogus chunk size, a line that never ends) and `soak-keepalive` (SSE comments, never
content), each with `soak-fallback` as its fallback. The admin's throttles and caches use
Redis (ATHENA_CACHE_URL), as a multi-process deployment's do.

Clients send mixed traffic through the gateway (Ollama and OpenAI protocols, generate and
chat, streaming and not) while, one after another: the MLX server is killed (SIGKILL) and
restarted, Redis is stopped for a minute (the admin's API is called directly meanwhile),
the admin is stopped for a minute, the Celery worker is restarted, and for a while each the
clients also ask for the hostile upstreams' models. Prints the figures and the goals, each
PASS or FAIL; exits 1 on a FAIL. `--minutes 2 --outage 0.2` is a smoke run of every fault.
Needs PostgreSQL at 127.0.0.1:5432 (trust, user postgres) and redis-server on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PY = sys.executable
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Short and long answers: long MLX streams are what a kill catches past their first byte.
MAX_TOKENS = (16, 128)
TEST_SERVER_MODEL = "llama3.2:latest"  # what the test server's /api/tags lists: probes say healthy
# How long the killed backend, Redis and the admin stay down (--outage scales them).
OUTAGE = {"backend": 45.0, "redis": 60.0, "admin": 60.0, "hostile": 30.0}
# The hostile upstreams' models, by fault; each falls back to soak-fallback.
HOSTILE = {
    "shapes": {"soak-shapes": "openai", "soak-shapes-ollama": "ollama"},
    "oversized": {"soak-oversized": "openai"},
    "keepalive": {"soak-keepalive": "openai"},
}
RESUME_WAIT_S = 150.0  # how long probes and roll-ups get to show they resumed


# --- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (a Celery pool's children), MiB."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total_kb, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            pass
    return total_kb / 1024


@dataclass
class Proc:
    """One child process: started, stopped, killed and restarted with the same command."""

    name: str
    argv: list[str]
    env: dict[str, str]
    logdir: Path
    ready_url: str | None = None  # GET answers below 500 once it is ready
    ready_log: str | None = None  # or: this text appears in its log
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def log(self) -> Path:
        return self.logdir / f"{self.name}.log"

    def start(self, timeout: float = 60.0) -> None:
        with self.log.open("ab") as out:
            # Its own session, so a kill reaches a Celery worker's pool children too.
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.logdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        assert self.popen is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode}; see {self.log}"
                )
            if self._is_ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s; see {self.log}")

    def _is_ready(self) -> bool:
        if self.ready_url:
            try:
                return httpx.get(self.ready_url, timeout=2).status_code < 500
            except httpx.HTTPError:
                return False
        if self.ready_log:
            return self.ready_log in self.log.read_text(errors="replace")
        return True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self, timeout: float = 60.0) -> None:
        self.stop()
        self.restarts += 1
        if self.ready_log:  # the old run's line must not count as the new run's
            self.log.rename(self.log.with_suffix(f".{self.restarts}.log"))
        self.start(timeout)

    def rss(self) -> float:
        return rss_mb(self.popen.pid) if self.popen and self.popen.poll() is None else 0.0


# --- the stack ---------------------------------------------------------------------------


@dataclass
class Stack:
    db_name: str
    workdir: Path
    procs: dict[str, Proc] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    service_key: str = ""
    # The clients' key: an operator's, so X-Athena-Backend names the serving endpoint.
    operator_key: str = ""
    fault_models: list[str] = field(default_factory=list)  # asked for too, during a fault
    calls: list[Call] = field(default_factory=list)  # every call, the faults' own included

    def __getitem__(self, name: str) -> Proc:
        return self.procs[name]


def create_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed_registry(stack: Stack) -> None:
    """Entries and the keys, written through the services as an operator's would be."""
    from django.contrib.auth import get_user_model

    from backends.services import backend_create, service_key_create

    backend_create(
        fields={
            "model_name": "soak-fallback",
            "backend_type": "ollama",
            "endpoint_url": stack.urls["ollama-b"],
            "upstream_model": TEST_SERVER_MODEL,
            "timeout_seconds": 10,
        }
    )
    backend_create(
        fields={
            "model_name": "soak-mlx",
            "backend_type": "mlx",
            "endpoint_url": stack.urls["mlx"],
            "upstream_model": "tiny-llama",
            "timeout_seconds": 10,
        },
        fallbacks=["soak-fallback"],
    )
    for mode, models in HOSTILE.items():
        for model, kind in models.items():
            backend_create(
                fields={
                    "model_name": model,
                    "backend_type": kind,
                    "endpoint_url": stack.urls[f"hostile-{mode}"],
                    "upstream_model": TEST_SERVER_MODEL,
                    # keepalive: the first-content deadline defaults to this timeout
                    "timeout_seconds": 5,
                },
                fallbacks=["soak-fallback"],
            )
    backend_create(
        fields={
            "model_name": "soak-ollama",
            "backend_type": "ollama",
            "endpoint_url": stack.urls["ollama-a"],
            "upstream_model": TEST_SERVER_MODEL,
            "timeout_seconds": 10,
        }
    )
    stack.service_key = service_key_create(name="soak")[1]
    operator = get_user_model().objects.create_superuser("soak-operator", "", None)
    stack.operator_key = service_key_create(name="soak-clients", owner=operator)[1]


def build_stack(stack: Stack) -> None:
    """Create the database and start every process, filling in `stack` as it goes."""
    workdir = stack.workdir
    names = ["redis", "admin", "mlx", "ollama-a", "ollama-b", "gw"]
    names += [f"hostile-{mode}" for mode in HOSTILE]
    ports = {name: free_port() for name in names}
    stack.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "athena_admin.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{stack.db_name}",
        "REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
        "ATHENA_VAR_DIR": str(workdir / "var"),
        "ADMIN_API_URL": stack.urls["admin"],
        "ATHENA_LOG_LEVEL": "WARNING",
    }
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "ATHENA_VAR_DIR")})
    os.environ["DJANGO_SETTINGS_MODULE"] = "athena_admin.settings"

    create_database(stack.db_name)
    subprocess.run(
        [PY, str(REPO / "manage.py"), "migrate", "--noinput", "-v", "0"], env=env, check=True
    )
    import django

    django.setup()
    seed_registry(stack)
    env["ATHENA_SERVICE_KEY"] = stack.service_key

    def proc(
        name: str, argv: list[str], extra_env: dict[str, str] | None = None, **ready: str
    ) -> None:
        stack.procs[name] = Proc(
            name,
            argv,
            {**env, **(extra_env or {})},
            workdir,
            ready_url=ready.get("ready_url"),
            ready_log=ready.get("ready_log"),
        )

    proc(
        "redis",
        ["redis-server", "--port", str(ports["redis"]), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        ready_log="Ready to accept connections",
    )  # fmt: skip
    proc(
        "admin",
        [PY, str(REPO / "manage.py"), "runserver", f"127.0.0.1:{ports['admin']}", "--noreload"],
        # Throttles and caches on Redis, as with several admin processes; rates on (debug
        # turns them off) but high enough that the traffic itself is never throttled.
        {
            "ATHENA_CACHE_URL": f"redis://127.0.0.1:{ports['redis']}/1",
            "ATHENA_API_USER_RATE": "100000/minute",
            "ATHENA_API_ANON_RATE": "1000/minute",
        },
        ready_url=stack.urls["admin"] + "/health",
    )
    proc(
        "worker",
        [PY, "-m", "celery", "-A", "athena_admin", "worker", "-l", "INFO", "--concurrency", "2"],
        {"ATHENA_LOG_LEVEL": "INFO"},  # its "celery@host ready." line says it consumes
        ready_log=" ready.",
    )
    proc("beat", [PY, "-m", "celery", "-A", "athena_admin", "beat", "-l", "INFO"])
    proc(
        "mlx",
        [PY, "-m", "mlx_server", "--model", str(REPO / "var/models/tiny-llama"),
         "--port", str(ports["mlx"]), "--log-level", "warning"],
        ready_url=stack.urls["mlx"] + "/health",
    )  # fmt: skip
    for name in ("ollama-a", "ollama-b"):
        proc(
            name,
            [PY, "-m", "tests.upstreams", "ollama", "--port", str(ports[name])],
            ready_url=stack.urls[name] + "/",
        )
    for mode in HOSTILE:
        proc(
            f"hostile-{mode}",
            [PY, str(REPO / "bench" / "hostile_upstream.py"), mode,
             "--port", str(ports[f"hostile-{mode}"])],
            ready_url=stack.urls[f"hostile-{mode}"] + "/health",
        )  # fmt: skip
    proc(
        "gateway",
        [PY, "-m", "athena_admin.gateway", "--port", str(ports["gw"])],
        ready_url=stack.urls["gw"] + "/health",
    )
    for p in stack.procs.values():
        p.start()


# --- traffic -----------------------------------------------------------------------------


@dataclass
class Call:
    started: float
    ended: float
    kind: str
    ok: bool
    cause: str = ""
    model: str = ""
    fallback: bool = False
    past_first_byte: bool = False


_SHAPES = [
    ("ollama", "/api/generate"),
    ("ollama", "/api/chat"),
    ("openai", "/v1/chat/completions"),
    ("openai", "/v1/completions"),
]


def request_body(
    protocol: str, path: str, model: str, stream: bool, max_tokens: int
) -> dict[str, object]:
    body: dict[str, object] = {"model": model, "stream": stream}
    if path.endswith("chat") or path.endswith("chat/completions"):
        body["messages"] = [{"role": "user", "content": "Say hello."}]
    else:
        body["prompt"] = "Say hello."
    if protocol == "ollama":
        body["options"] = {"num_predict": max_tokens}
    else:
        body["max_tokens"] = max_tokens
    return body


def stream_outcome(protocol: str, lines: list[str]) -> str:
    """'' when a stream ended properly; else why not (a clear error or a silent cut)."""
    for line in lines:
        payload = line.removeprefix("data: ") if protocol == "openai" else line
        if not payload or payload == "[DONE]":
            continue
        if '"error"' in payload and "error" in json.loads(payload):
            return "stream error after first byte (clear message)"
    done = any(line == "data: [DONE]" for line in lines) if protocol == "openai" else (
        bool(lines) and json.loads(lines[-1]).get("done") is True
    )  # fmt: skip
    return "" if done else "stream cut after first byte (no message)"


async def one_call(client: httpx.AsyncClient, stack: Stack, rng: random.Random) -> Call:
    protocol, path = rng.choice(_SHAPES)
    model = rng.choice(["soak-mlx", "soak-mlx", "soak-ollama", *stack.fault_models])
    stream = rng.random() < 0.5
    kind = f"{protocol} {'stream' if stream else 'single'} {model}"
    body = request_body(protocol, path, model, stream, rng.choice(MAX_TOKENS))
    started = time.monotonic()
    call = Call(started, started, kind, ok=False, model=model)
    try:
        async with client.stream("POST", stack.urls["gw"] + path, json=body) as response:
            call.fallback = stack.urls["ollama-b"] in response.headers.get("x-athena-backend", "")
            if response.status_code != 200:
                await response.aread()
                call.cause = f"HTTP {response.status_code}"
            elif stream:
                # The gateway holds the headers until the first content: 200 means it started.
                call.past_first_byte = True
                lines = [line async for line in response.aiter_lines() if line.strip()]
                call.cause = stream_outcome(protocol, lines)
            else:
                answer = json.loads(await response.aread())
                call.cause = "" if ("choices" in answer or "done" in answer) else "bad answer"
    except httpx.TimeoutException:
        call.cause = "client timeout"
    except ValueError:
        call.cause = "malformed answer"
    except httpx.TransportError as exc:
        call.cause = f"transport: {type(exc).__name__}"
    call.ok = not call.cause
    call.ended = time.monotonic()
    return call


async def client_loop(
    stack: Stack, calls: list[Call], stop: asyncio.Event, seed: int, pause: float
) -> None:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {stack.operator_key}"}
    async with httpx.AsyncClient(headers=headers, timeout=60, trust_env=False) as client:
        while not stop.is_set():
            calls.append(await one_call(client, stack, rng))
            await asyncio.sleep(pause * rng.random())


# --- faults: each returns the (name, start, end) window it covers --------------------------


Window = tuple[str, float, float]


async def kill_and_restart_backend(stack: Stack, log: list[str]) -> Window:
    """SIGKILL the MLX server (the primary of soak-mlx); restart it after a while."""
    start = time.monotonic()
    stack["mlx"].kill()
    log.append(f"{clock()} MLX server killed")
    await asyncio.sleep(OUTAGE["backend"])
    await asyncio.to_thread(stack["mlx"].restart)
    log.append(f"{clock()} MLX server back")
    return ("backend killed", start, time.monotonic())


async def admin_api_calls(stack: Stack, stop: asyncio.Event) -> None:
    """Call the admin's own entry points (throttled, rate-limited, cached) until stopped."""
    from uuid import uuid4

    admin = stack.urls["admin"]
    headers = {"Authorization": f"Bearer {stack.service_key}"}
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        while not stop.is_set():
            sample = {
                "id": str(uuid4()), "entry_id": None, "model": "soak", "backend_type": "ollama",
                "endpoint_url": "http://127.0.0.1:1", "started_at": "2026-01-01T00:00:00Z",
                "ok": True, "latency_ms": 1.0,
            }  # fmt: skip
            requests: list[tuple[str, str, dict[str, Any]]] = [
                ("GET", "/api/routes", {"headers": headers}),
                ("GET", "/api/route/soak-ollama", {"headers": headers}),
                ("POST", "/api/metrics/samples", {"headers": headers, "json": {"samples": [sample]}}),
                ("POST", "/admin/login/", {"data": {"username": "nobody", "password": "x"}}),
                ("POST", "/openid/token", {"data": {"grant_type": "client_credentials",
                                                    "client_id": "nobody", "client_secret": "x"}}),
            ]  # fmt: skip
            for method, path, options in requests:
                started = time.monotonic()
                call = Call(started, started, f"admin {method} {path}", ok=False, model="admin")
                try:
                    response = await client.request(method, admin + path, **options)
                    # 4xx is an answer (a login page's 403 CSRF, a throttle's 429): only a
                    # 5xx or no answer is the failure Redis used to cause.
                    call.cause = (
                        f"HTTP {response.status_code}" if response.status_code >= 500 else ""
                    )
                except httpx.HTTPError as exc:
                    call.cause = f"admin transport: {type(exc).__name__}"
                call.ok = not call.cause
                call.ended = time.monotonic()
                stack.calls.append(call)
            await asyncio.sleep(1.0)


async def stop_and_start_redis(stack: Stack, log: list[str]) -> Window:
    """Stop Redis (broker and the admin's throttle cache); the admin API is called meanwhile."""
    start = time.monotonic()
    stop = asyncio.Event()
    await asyncio.to_thread(stack["redis"].stop)
    log.append(f"{clock()} Redis stopped")
    calls = asyncio.create_task(admin_api_calls(stack, stop))
    await asyncio.sleep(OUTAGE["redis"])
    stop.set()
    await calls
    await asyncio.to_thread(stack["redis"].restart)
    log.append(f"{clock()} Redis back")
    return ("redis down", start, time.monotonic())


def hostile_upstream(mode: str) -> Fault:
    """For a while, clients also ask for the models whose primary is the hostile upstream."""

    async def fault(stack: Stack, log: list[str]) -> Window:
        start = time.monotonic()
        stack.fault_models[:] = list(HOSTILE[mode])
        log.append(f"{clock()} clients ask for the {mode} upstream's models too")
        await asyncio.sleep(OUTAGE["hostile"])
        stack.fault_models.clear()
        log.append(f"{clock()} {mode} upstream left alone")
        return (f"upstream {mode}", start, time.monotonic())

    fault.__name__ = f"upstream_{mode}"
    return fault


async def stop_and_start_admin(stack: Stack, log: list[str]) -> Window:
    start = time.monotonic()
    await asyncio.to_thread(stack["admin"].stop)
    log.append(f"{clock()} admin stopped")
    await asyncio.sleep(OUTAGE["admin"])
    await asyncio.to_thread(stack["admin"].restart)
    log.append(f"{clock()} admin back")
    return ("admin down", start, time.monotonic())


async def restart_celery_worker(stack: Stack, log: list[str]) -> Window:
    start = time.monotonic()
    await asyncio.to_thread(stack["worker"].restart)
    log.append(f"{clock()} Celery worker restarted")
    return ("worker restarted", start, time.monotonic())


Fault = Callable[[Stack, list[str]], Awaitable[Window]]
HOSTILE_FAULTS: list[Fault] = [hostile_upstream(mode) for mode in HOSTILE]
FAULTS: list[Fault] = [
    kill_and_restart_backend,
    HOSTILE_FAULTS[0],
    stop_and_start_redis,
    HOSTILE_FAULTS[1],
    stop_and_start_admin,
    HOSTILE_FAULTS[2],
    restart_celery_worker,
]

_T0 = time.monotonic()  # reset when the traffic starts


def estimate(fault: Fault) -> float:
    """Seconds a fault is expected to take, with the wait for probes and roll-ups after it."""
    durations: dict[Fault, float] = {
        kill_and_restart_backend: OUTAGE["backend"] + 10,
        stop_and_start_redis: OUTAGE["redis"] + 45,
        stop_and_start_admin: OUTAGE["admin"] + 5,
        restart_celery_worker: 50.0,
        **{f: OUTAGE["hostile"] + 5 for f in HOSTILE_FAULTS},
    }
    return durations[fault]


def clock() -> str:
    seconds = time.monotonic() - _T0
    return f"[{int(seconds // 60):02d}:{int(seconds % 60):02d}]"


def background_work_since(wall: float) -> tuple[bool, bool]:
    """(a probe recorded, a roll-up ran) since a wall-clock time, read from the database."""
    from datetime import UTC, datetime

    from django.db import close_old_connections

    from backends.models import HealthCheck, RollupWatermark

    close_old_connections()
    since = datetime.fromtimestamp(wall, UTC)
    probed = HealthCheck.objects.filter(checked_at__gt=since).exists()
    rolled = RollupWatermark.objects.filter(received_before__gt=since).exists()
    return probed, rolled


async def wait_for_background_work(wall: float, log: list[str], what: str) -> float | None:
    """Seconds until both a probe and a roll-up happened after `wall`; None if not in time."""
    deadline = time.monotonic() + RESUME_WAIT_S
    while time.monotonic() < deadline:
        probed, rolled = await asyncio.to_thread(background_work_since, wall)
        if probed and rolled:
            took = time.time() - wall
            log.append(
                f"{clock()} probes and roll-ups resumed {took:.0f} s after the {what} window"
            )
            return took
        await asyncio.sleep(2)
    log.append(f"{clock()} probes and roll-ups did NOT resume within {RESUME_WAIT_S:.0f} s")
    return None


# --- the run -----------------------------------------------------------------------------


@dataclass
class Report:
    calls: list[Call] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    resumed: dict[str, float | None] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)  # faults whose restart failed
    log: list[str] = field(default_factory=list)


def snapshot(stack: Stack, report: Report, label: str) -> None:
    report.memory[label] = {name: p.rss() for name, p in stack.procs.items()}
    report.log.append(f"{clock()} memory snapshot '{label}'")


async def run_faults(stack: Stack, report: Report, total: float, warmup: float) -> None:
    await asyncio.sleep(warmup)
    snapshot(stack, report, "minute 2")
    for index, fault in enumerate(FAULTS):
        left = total - (time.monotonic() - _T0)
        still = sum(estimate(f) for f in FAULTS[index:])
        await asyncio.sleep(max(5.0, (left - still) / (len(FAULTS) - index + 1)))
        try:
            report.windows.append(await fault(stack, report.log))
        except Exception as exc:  # a fault that went wrong is a finding, not the end of the run
            report.log.append(f"{clock()} {fault.__name__} FAILED: {exc}")
            report.broken.append(fault.__name__)
            continue
        if fault in (stop_and_start_redis, restart_celery_worker):
            name, _, end = report.windows[-1]
            wall = time.time() - (time.monotonic() - end)
            report.resumed[name] = await wait_for_background_work(wall, report.log, name)


async def soak(stack: Stack, minutes: float, clients: int, pause: float) -> Report:
    global _T0
    _T0 = time.monotonic()
    report = Report()
    total = minutes * 60
    warmup = min(120.0, total * 0.2)
    stop = asyncio.Event()
    snapshot(stack, report, "start")
    stack.calls = report.calls
    loops = [
        asyncio.create_task(client_loop(stack, report.calls, stop, seed, pause))
        for seed in range(clients)
    ]
    await run_faults(stack, report, total, warmup)
    await asyncio.sleep(max(0.0, total - (time.monotonic() - _T0)))
    snapshot(stack, report, "end")
    stop.set()
    await asyncio.gather(*loops)
    return report


# --- figures and goals -------------------------------------------------------------------


def overlaps(call: Call, window: Window) -> bool:
    return call.started < window[2] and call.ended > window[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def print_report(stack: Stack, report: Report, minutes: float) -> bool:
    calls = report.calls
    ok = [c for c in calls if c.ok]
    causes = Counter(c.cause for c in calls if not c.ok)
    latencies = [(c.ended - c.started) * 1000 for c in ok]
    print("\n## Timeline\n")
    for line in report.log:
        print(f"    {line}")
    print("\n## Traffic\n")
    print("| figure | value |\n|---|---|")
    print(f"| requests sent | {len(calls)} |")
    print(f"| succeeded | {len(ok)} ({100 * len(ok) / max(len(calls), 1):.3f} %) |")
    print(f"| failed | {len(calls) - len(ok)} |")
    for cause, count in causes.most_common():
        print(f"| failed: {cause} | {count} |")
    print(f"| served by the fallback | {sum(c.fallback for c in calls)} |")
    print(
        f"| latency p50 / p99 (ok calls) | {pct(latencies, 0.5):.0f} / {pct(latencies, 0.99):.0f} ms |"
    )
    print(f"| throughput | {len(calls) / (minutes * 60):.1f} requests/s |")

    print("\n## Memory (RSS, MiB; a process with its children)\n")
    print("| process | start | minute 2 | end | growth 2 -> end |\n|---|---|---|---|---|")
    memory_ok = True
    for name, p in stack.procs.items():
        start, m2, end = (report.memory[k][name] for k in ("start", "minute 2", "end"))
        growth = (end - m2) / m2 * 100 if m2 else float("nan")
        note = f"{growth:+.1f} %"
        if p.restarts:
            note += f" (restarted {p.restarts}x: a new process, not compared)"
        elif name.startswith("hostile-"):
            # The fault injectors, not Athena: the oversized one builds 200 MiB answers.
            note += " (a fault injector, not compared)"
        elif growth > 10:
            memory_ok = False
        print(f"| {name} | {start:.0f} | {m2:.0f} | {end:.0f} | {note} |")

    print("\n## Goals\n")
    goals: list[tuple[str, bool, str]] = []
    for window in report.windows:
        name = window[0]
        during = [c for c in calls if overlaps(c, window)]
        failed = [c for c in during if not c.ok]
        if name == "backend killed":
            # In flight at the kill, past the first byte: the only failures allowed.
            allowed = [
                c
                for c in failed
                if c.past_first_byte and c.started < window[1] and "clear message" in c.cause
            ]
            others = [c for c in during if c not in allowed]
            rate = 100 * sum(c.ok for c in others) / max(len(others), 1)
            goals.append((
                ">= 99.9 % success while a backend is killed",
                rate >= 99.9 and len(failed) == len(allowed),
                f"{len(during)} requests, {rate:.2f} % ok apart from {len(allowed)} stream(s) "
                f"cut with a clear error; other failures: {Counter(c.cause for c in failed if c not in allowed)}",
            ))  # fmt: skip
        elif name == "admin down":
            goals.append((
                "no failure while the admin is down",
                not failed,
                f"{len(during)} requests, {len(failed)} failed {dict(Counter(c.cause for c in failed))}",
            ))  # fmt: skip
        elif name == "redis down":
            resumed = report.resumed.get(name)
            admin = [c for c in during if c.model == "admin"]
            goals.append((
                "requests flow while Redis is down; probes and roll-ups resume after",
                not failed and len(during) > 0 and resumed is not None,
                f"{len(during) - len(admin)} requests, {len(failed)} failed; resumed "
                + (f"{resumed:.0f} s after Redis came back" if resumed is not None else "NOT"),
            ))  # fmt: skip
            admin_failed = [c for c in admin if not c.ok]
            goals.append((
                "the admin API (throttles and caches on Redis) answers while Redis is down",
                len(admin) > 0 and not admin_failed,
                f"{len(admin)} calls, {len(admin_failed)} failed "
                f"{dict(Counter(f'{c.kind}: {c.cause}' for c in admin_failed))}",
            ))  # fmt: skip
        elif name.startswith("upstream "):
            models = HOSTILE[name.removeprefix("upstream ")]
            asked = [c for c in during if c.model in models]
            bad = [c for c in asked if not c.ok]
            goals.append((
                f"every request to the {name.removeprefix('upstream ')} upstream is answered "
                "(by its fallback), none hangs",
                len(asked) > 0 and not bad,
                f"{len(asked)} requests, {sum(c.fallback for c in asked)} by the fallback, "
                f"{len(bad)} failed {dict(Counter(c.cause for c in bad))}",
            ))  # fmt: skip
        elif name == "worker restarted":
            resumed = report.resumed.get(name)
            goals.append((
                "probes and roll-ups resume after a worker restart",
                resumed is not None and not failed,
                f"{len(during)} requests, {len(failed)} failed; resumed "
                + (f"{resumed:.0f} s after" if resumed is not None else "NOT"),
            ))  # fmt: skip
    goals.append(("memory growth <= 10 % from minute 2 to the end", memory_ok, "see the table"))
    for name in report.broken:
        goals.append((f"{name} recovered", False, "see the timeline and the logs"))
    for goal, passed, detail in goals:
        print(f"- {'PASS' if passed else 'FAIL'}: {goal} ({detail})")
    return all(passed for _, passed, _ in goals)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--pause", type=float, default=0.2, help="max seconds between calls")
    parser.add_argument("--outage", type=float, default=1.0, help="scale the outages (smoke runs)")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    for name in OUTAGE:
        OUTAGE[name] *= args.outage

    workdir = Path(tempfile.mkdtemp(prefix="athena-soak-"))
    print(f"logs in {workdir}", flush=True)
    stack = Stack(db_name=f"athena_soak_{os.getpid()}", workdir=workdir)
    passed = False
    try:
        build_stack(stack)
        print(
            f"{clock()} all {len(stack.procs)} processes up; soaking {args.minutes:g} min",
            flush=True,
        )
        report = asyncio.run(soak(stack, args.minutes, args.clients, args.pause))
        passed = print_report(stack, report, args.minutes)
    finally:
        for p in reversed(stack.procs.values()):
            p.stop()
        if not args.keep:
            from django.db import connections

            connections.close_all()
            drop_database(stack.db_name)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
