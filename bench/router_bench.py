"""Router overhead vs a direct httpx call to the same local upstream.

    .venv/bin/python bench/router_bench.py [--quick] [--rounds N] [--upstreams K]

Each cell runs direct and router calls in alternating rounds (direct-router, then
router-direct, ...) so both see the same machine noise, and reports the median over rounds with
the spread. The upstreams (tests/upstreams, 16-chunk answers) and a stand-in admin receiving the
metrics run in their own processes, pinned to other CPUs than this one where there are two or
more; ``--upstreams K`` starts K servers per protocol, called round-robin by both sides, when
there are cores to run them. Closed loop at c=1 and c=64. Prints a markdown table.

Columns: p50 and p99 are over all calls of a side; "added" is router minus direct. RPS ratio
is the median of the per-round ratios [min-max]. "CPU/call" is this process's CPU time per
call (the client's own cost, which is what the router adds): unlike wall time it hardly
moves when the upstream saturates its core or other work shares the machine. It is shown
for three clients: direct (httpx with its default transport, httpcore), "lean" (the same
direct call over the router's own HTTP/1.1 transport, which the router uses by default) and
the router, each the least over rounds; router minus lean is the router's own work per call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from routing import LLMRouter  # noqa: E402
from routing._transport import LeanTransport  # noqa: E402
from tests.upstreams import RunningServer, serve_in_subprocess  # noqa: E402

Call = Callable[[int], Awaitable[None]]


def cpu(side: Side) -> float:
    """CPU µs per call: the least over rounds, the one least disturbed by other work."""
    return min(side.cpu_us)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


@dataclass
class Side:
    """One side's (direct or router) results over the rounds of one cell."""

    latencies: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)


async def closed_loop(call: Call, concurrency: int, total: int, side: Side | None = None) -> None:
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            t0 = time.perf_counter()
            await call(i)
            latencies.append((time.perf_counter() - t0) * 1000)

    cpu0, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    if side is not None:
        side.latencies += latencies
        side.rps.append(total / wall)
        side.cpu_us.append(cpu / total * 1e6)


def direct_caller(client: httpx.AsyncClient, urls: list[str], protocol: str, stream: bool) -> Call:
    if protocol == "ollama":
        path, body = (
            "/api/generate",
            {
                "model": "m",
                "prompt": "hi",
                "stream": stream,
                "options": {"temperature": 0.7, "num_predict": 2048},
            },
        )
    else:
        path, body = (
            "/v1/completions",
            {
                "model": "m",
                "prompt": "hi",
                "max_tokens": 2048,
                "temperature": 0.7,
                "stream": stream,
            },
        )
        if stream:
            body["stream_options"] = {"include_usage": True}
    timeout = httpx.Timeout(60, connect=5)
    full = [url + path for url in urls]

    async def call(i: int) -> None:
        url = full[i % len(full)]
        if not stream:
            r = await client.post(url, json=body, timeout=timeout)
            obj = json.loads(r.content)
            assert obj.get("response") or obj.get("choices")
            return
        parts = []
        async with client.stream("POST", url, json=body, timeout=timeout) as r:
            async for line in r.aiter_lines():
                if protocol == "ollama":
                    if line:
                        parts.append(json.loads(line).get("response", ""))
                elif line.startswith("data:") and line[5:].strip() != "[DONE]":
                    parts.append(json.loads(line[5:]))
        assert parts

    return call


def router_caller(router: LLMRouter, models: list[str], stream: bool) -> Call:
    async def call(i: int) -> None:
        model = models[i % len(models)]
        if not stream:
            r = await router.generate(model=model, prompt="hi")
            assert r["response"]
            return
        parts = [t async for t in router.stream(model=model, prompt="hi")]
        assert parts

    return call


def import_times() -> tuple[float, float]:
    def total(code: str) -> float:
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            capture_output=True,
            text=True,
            cwd=REPO,
        ).stderr
        cumulative = 0
        for line in out.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            _, cum, name = line.split("|")
            # Top-level imports only: their cumulative time covers the rest.
            if not name[1:].startswith(" "):
                cumulative += int(cum)
        return cumulative / 1000

    return (
        min(total("import routing") for _ in range(3)),
        min(total("from routing import LLMRouter") for _ in range(3)),
    )


def pin_cpus() -> tuple[set[int], set[int]]:
    """Return (this process's CPUs, the servers' CPUs); servers get all but one where possible."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return {cpus[0]}, set(cpus[1:])


def start_servers(
    upstreams: int, mine: set[int], theirs: set[int]
) -> tuple[dict[str, list[RunningServer]], RunningServer]:
    # Children inherit the affinity they are started with: start them on their CPUs, then
    # move this process to its own.
    os.sched_setaffinity(0, theirs)
    try:
        servers = {
            p: [serve_in_subprocess(p, "--words", "16") for _ in range(upstreams)]
            for p in ("ollama", "openai")
        }
        admin = serve_in_subprocess("admin")
    finally:
        os.sched_setaffinity(0, mine)
    return servers, admin


async def main(quick: bool, rounds: int, upstreams: int, pin: bool) -> None:
    # Calls per side per round.
    n1, n64 = (60, 400) if quick else (200, 1000)
    cpus = os.sched_getaffinity(0)
    mine, theirs = pin_cpus() if pin else (cpus, cpus)
    servers, admin = start_servers(upstreams, mine, theirs)
    routes = {
        "routes": [
            {
                "model": f"bench-{p}-{i}",
                "targets": [{"backend_type": p, "endpoint_url": s.url, "upstream_model": "m"}],
            }
            for p, group in servers.items()
            for i, s in enumerate(group)
        ]
    }
    rows = []
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(routes, f)
    try:
        # Why 4 s: uvicorn drops connections idle for 5 s; reusing one as it does is a ReadError.
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=64, keepalive_expiry=4)
        async with (
            httpx.AsyncClient(limits=limits, trust_env=False) as client,
            # The router's default transport, called directly: the router's own cost is the
            # difference between this client's CPU per call and the router's.
            httpx.AsyncClient(transport=LeanTransport(limits=limits), trust_env=False) as lean,
            LLMRouter(
                admin.url, routes_file=f.name, metrics_interval=0.5, keepalive_expiry=4
            ) as router,
        ):
            for protocol in ("ollama", "openai"):
                urls = [s.url for s in servers[protocol]]
                models = [f"bench-{protocol}-{i}" for i in range(upstreams)]
                for stream in (False, True):
                    for c, n in ((1, n1), (64, n64)):
                        direct = direct_caller(client, urls, protocol, stream)
                        direct_lean = direct_caller(lean, urls, protocol, stream)
                        routed = router_caller(router, models, stream)
                        for call in (direct, direct_lean, routed):  # warm the pools
                            await closed_loop(call, c, min(n, 200))
                        d, dl, r = Side(), Side(), Side()
                        for k in range(rounds):
                            order = ((direct, d), (direct_lean, dl), (routed, r))
                            for call, side in order if k % 2 == 0 else reversed(order):
                                await closed_loop(call, c, n, side)
                        rows.append((protocol, stream, c, d, dl, r))
            sent = router._session().metrics.sent + router._session().metrics.buffered
    finally:
        for s in (*(s for group in servers.values() for s in group), admin):
            s.stop()
        Path(f.name).unlink()

    print(
        "| upstream | stream | c | p50 direct / router | added p50 | p99 direct / router "
        "| added p99 | RPS direct / router | RPS ratio [min-max] "
        "| CPU/call direct / lean / router | router's own CPU/call |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for p, stream, c, d, dl, r in rows:
        dp50, rp50 = statistics.median(d.latencies), statistics.median(r.latencies)
        dp99, rp99 = pct(d.latencies, 0.99), pct(r.latencies, 0.99)
        ratios = [b / a for a, b in zip(d.rps, r.rps, strict=True)]
        print(
            f"| {p} | {'yes' if stream else 'no'} | {c} | {dp50:.2f} / {rp50:.2f} ms "
            f"| {rp50 - dp50:+.3f} ms | {dp99:.2f} / {rp99:.2f} ms | {rp99 - dp99:+.3f} ms "
            f"| {statistics.median(d.rps):,.0f} / {statistics.median(r.rps):,.0f} "
            f"| {statistics.median(ratios):.1%} [{min(ratios):.0%}-{max(ratios):.0%}] "
            f"| {cpu(d):.0f} / {cpu(dl):.0f} / {cpu(r):.0f} µs | {cpu(r) - cpu(dl):+.1f} µs |"
        )
    imp, imp_router = import_times()
    print(
        f"\n`import routing`: {imp:.1f} ms; `from routing import LLMRouter` (loads httpx): "
        f"{imp_router:.1f} ms"
    )
    print(
        f"{rounds} rounds per cell; client on CPUs {sorted(mine)}, {upstreams} upstream(s) per "
        f"protocol and the admin on CPUs {sorted(theirs)}; load average before / after: "
        f"{LOAD[0]:.2f} / {os.getloadavg()[0]:.2f}; metrics samples recorded: {sent:,}"
    )


LOAD = os.getloadavg()

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    parser.add_argument("--rounds", type=int, default=0, help="rounds per cell (default 6, 3)")
    parser.add_argument(
        "--upstreams",
        type=int,
        default=max(1, min(4, len(os.sched_getaffinity(0)) - 2)),
        help="servers per protocol (default: the spare cores, 1 to 4)",
    )
    parser.add_argument("--no-pin", action="store_true", help="leave CPU affinity alone")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 6)
    asyncio.run(main(args.quick, rounds, args.upstreams, not args.no_pin))
