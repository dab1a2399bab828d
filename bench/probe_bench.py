"""Probe fan-out: 1,000 entries on distinct hosts, 10% dead, 10% slow; wall time vs timeout.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/athena_bench \
        .venv/bin/python bench/probe_bench.py [--entries 1000] [--timeout 5]

Every entry gets its own loopback address (127.0.x.y, all routed to this machine on Linux)
so no two share a probe or a host lock. Healthy and slow hosts are served by two uvicorn
processes, each listening on its share of the addresses; dead addresses have no listener.
Slow hosts answer after twice the timeout, so each one costs a full timeout. The database
named in DATABASE_URL is created if missing and its registry is replaced.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PORT = 18_434


def _address(i: int) -> str:
    return f"127.0.{10 + i // 250}.{1 + i % 250}"


def serve(first: int, count: int, delay: float) -> None:
    """Listen on the given addresses and answer the probe paths (a child process)."""
    import uvicorn

    from tests.backends.probe_servers import Knobs, probe_app

    knobs = Knobs(delay=delay, models=("bench-model",))
    knobs.requests = _NoRecord()
    sockets = []
    for i in range(first, first + count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((_address(i), PORT))
        sock.listen(128)
        sockets.append(sock)
    config = uvicorn.Config(probe_app(knobs), log_level="critical", lifespan="off")
    print("READY", flush=True)
    asyncio.run(uvicorn.Server(config).serve(sockets=sockets))


class _NoRecord(list):  # type: ignore[type-arg]
    def append(self, item: object) -> None:
        pass


def _spawn(first: int, count: int, delay: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(first), str(count), str(delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
    return proc


def _database() -> None:
    import dj_database_url
    import psycopg

    url = os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/athena_bench")
    name = dj_database_url.parse(url)["NAME"]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "athena_admin.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), int(args.serve[1]), float(args.serve[2]))
        return
    _database()
    from django.conf import settings

    from backends.models import LLMBackend
    from backends.probes import probe_entries

    n = args.entries
    dead, slow = n // 10, n // 10
    healthy = n - dead - slow
    LLMBackend.objects.all().delete()
    kinds = ("ollama", "mlx", "openai")
    # Shuffled, so the slow and dead hosts are spread through the registry's order.
    order = list(range(n))
    random.Random(5).shuffle(order)
    LLMBackend.objects.bulk_create(
        LLMBackend(
            model_name=f"bench-{i:04d}",
            upstream_model="bench-model",
            backend_type=kinds[i % 3],
            endpoint_url=f"http://{_address(i)}:{PORT}",
        )
        for i in order
    )
    from backends import probes

    observing = {}
    observe = probes.observe

    async def timed_observe(*a, **kw):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return await observe(*a, **kw)
        finally:
            observing["s"] = time.perf_counter() - t

    probes.observe = timed_observe  # type: ignore[assignment]
    servers = [_spawn(0, healthy, 0.0), _spawn(healthy, slow, args.timeout * 2)]
    rounds = []
    try:
        # Round 1 knows nothing; round 2 starts last round's slow and failed hosts first.
        for label in ("1 (cold)", "2"):
            started = time.perf_counter()
            outcomes = probe_entries(timeout=args.timeout)
            rounds.append((label, observing["s"], time.perf_counter() - started))
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait()
    by_error: dict[str, int] = {}
    for o in outcomes:
        key = o.observation.error or o.health
        by_error[key] = by_error.get(key, 0) + 1
    print(
        "| round | entries | healthy / slow / dead | timeout s | concurrency | probing s "
        "| recording s | wall s | wall / timeout |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for label, probing, wall in rounds:
        print(
            f"| {label} | {n} | {healthy} / {slow} / {dead} | {args.timeout:g} | "
            f"{settings.ATHENA_PROBE_CONCURRENCY} | {probing:.2f} | {wall - probing:.2f} | "
            f"{wall:.2f} | {wall / args.timeout:.2f}x |"
        )
    print("\noutcomes:", ", ".join(f"{k}: {v}" for k, v in sorted(by_error.items())))


if __name__ == "__main__":
    main()
