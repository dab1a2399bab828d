"""Router overhead vs a direct httpx call to the same local upstream.

    .venv/bin/python bench/router_bench.py [--quick]

The upstream (tests/upstreams, 16-chunk answers) and a stand-in admin receiving the metrics run
in their own processes, so they do not share this event loop. Closed loop: c=1 x 300 and
c=64 x 2000 requests, direct and router runs interleaved. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from routing import LLMRouter  # noqa: E402
from tests.upstreams import serve_in_subprocess  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def closed_loop(
    call: Callable[[int], Awaitable[None]], concurrency: int, total: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            t0 = time.perf_counter()
            await call(i)
            latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, total / (time.perf_counter() - started)


def direct_caller(
    client: httpx.AsyncClient, url: str, protocol: str, stream: bool
) -> Callable[[int], Awaitable[None]]:
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

    async def call(_: int) -> None:
        if not stream:
            r = await client.post(url + path, json=body, timeout=timeout)
            obj = json.loads(r.content)
            assert obj.get("response") or obj.get("choices")
            return
        parts = []
        async with client.stream("POST", url + path, json=body, timeout=timeout) as r:
            async for line in r.aiter_lines():
                if protocol == "ollama":
                    if line:
                        parts.append(json.loads(line).get("response", ""))
                elif line.startswith("data:") and line[5:].strip() != "[DONE]":
                    parts.append(json.loads(line[5:]))
        assert parts

    return call


def router_caller(router: LLMRouter, model: str, stream: bool) -> Callable[[int], Awaitable[None]]:
    async def call(_: int) -> None:
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
            if not name[1:].startswith(
                " "
            ):  # top-level imports only: their cumulative covers the rest
                cumulative += int(cum)
        return cumulative / 1000

    return (
        min(total("import routing") for _ in range(3)),
        min(total("from routing import LLMRouter") for _ in range(3)),
    )


async def main(quick: bool) -> None:
    n1, n64 = (100, 500) if quick else (300, 2000)
    servers = {p: serve_in_subprocess(p, "--words", "16") for p in ("ollama", "openai")}
    admin = serve_in_subprocess("admin")
    routes = {
        "routes": [
            {
                "model": f"bench-{p}",
                "targets": [{"backend_type": p, "endpoint_url": s.url, "upstream_model": "m"}],
            }
            for p, s in servers.items()
        ]
    }
    rows = []
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(routes, f)
    try:
        limits = httpx.Limits(
            max_connections=200, max_keepalive_connections=64, keepalive_expiry=30
        )
        async with (
            httpx.AsyncClient(limits=limits, trust_env=False) as client,
            LLMRouter(admin.url, routes_file=f.name, metrics_interval=0.5) as router,
        ):
            for protocol in ("ollama", "openai"):
                for stream in (False, True):
                    for c, n in ((1, n1), (64, n64)):
                        direct = direct_caller(client, servers[protocol].url, protocol, stream)
                        routed = router_caller(router, f"bench-{protocol}", stream)
                        await closed_loop(direct, c, min(n, 100))  # warm both pools
                        await closed_loop(routed, c, min(n, 100))
                        d_lat: list[float] = []
                        r_lat: list[float] = []
                        d_rps: list[float] = []
                        r_rps: list[float] = []
                        for _ in range(2):  # interleave to share the machine's noise
                            lat, rps = await closed_loop(direct, c, n // 2)
                            d_lat += lat
                            d_rps.append(rps)
                            lat, rps = await closed_loop(routed, c, n // 2)
                            r_lat += lat
                            r_rps.append(rps)
                        rows.append(
                            (
                                protocol,
                                stream,
                                c,
                                statistics.median(d_lat),
                                statistics.median(r_lat),
                                pct(d_lat, 0.99),
                                pct(r_lat, 0.99),
                                statistics.mean(d_rps),
                                statistics.mean(r_rps),
                            )
                        )
            sent = router._metrics.sent + router._metrics.buffered
    finally:
        for s in (*servers.values(), admin):
            s.stop()
        Path(f.name).unlink()
    print(
        "| upstream | stream | c | direct p50 | router p50 | added p50 | direct p99 | router p99 | added p99 | RPS direct / router | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for p, stream, c, dp50, rp50, dp99, rp99, drps, rrps in rows:
        print(
            f"| {p} | {'yes' if stream else 'no'} | {c} | {dp50:.2f} ms | {rp50:.2f} ms | {rp50 - dp50:+.3f} ms | "
            f"{dp99:.2f} ms | {rp99:.2f} ms | {rp99 - dp99:+.3f} ms | {drps:,.0f} / {rrps:,.0f} | {rrps / drps:.1%} |"
        )
    imp, imp_router = import_times()
    print(
        f"\n`import routing`: {imp:.1f} ms; `from routing import LLMRouter` (loads httpx): {imp_router:.1f} ms"
    )
    print(f"metrics samples recorded during the run: {sent:,}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    asyncio.run(main(parser.parse_args().quick))
