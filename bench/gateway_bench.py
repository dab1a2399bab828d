"""The gateway's added latency and throughput vs the upstream called directly vs LiteLLM.

    .venv/bin/python bench/gateway_bench.py [--quick] [--no-litellm] [--paced MS] [--workers N]

Every server runs in its own process: the OpenAI-protocol test upstream (tests/upstreams,
16-chunk answers, no delay), a stand-in admin receiving the router's metrics, the gateway
(`athena_admin.gateway.__main__.serve`, as `python -m athena_admin.gateway` runs it) and the
LiteLLM proxy (from var/litellm-venv, settings as in /work/shared/ANCHORS.md). The load is
a closed loop from a minimal keep-alive HTTP/1.1 client (raw asyncio streams, so the load
generator costs little CPU on a 2-core machine): POST /v1/chat/completions, c=1 x 300 and
c=64 x 2,000 (LiteLLM: fewer, it is ~100x slower), direct/gateway/LiteLLM runs interleaved.
Prints a markdown table.

``--paced MS`` measures what a user of a real model sees instead: the upstream pauses MS
between its 16 chunks (10 ms is a 100 tokens/s model), streaming only. With a fast upstream,
the c=64 rows measure a saturated machine (client, upstream and gateway share its cores, so
the gateway's CPU turns into queueing); with a paced one, they measure the gateway's own delay.

``--workers N`` runs the gateway as ``--workers N`` does (athena_admin.gateway.workers): N
processes on one port. Worth it only with cores to spare beyond the upstream and the client.
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
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from athena_admin.gateway import GatewayApp, GatewayConfig

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LITELLM_VENV = REPO / "var" / "litellm-venv"
BENCH_TOKEN = "bench-token"
LITELLM_KEY = "sk-bench-master"


# --- the load generator ------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a prepared request and reads the answer."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def call(self, raw: bytes) -> tuple[float, float, bytes]:
        """Return (time to first body byte, total time, body) in ms."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.reader, self.writer
        assert reader is not None
        started = time.perf_counter()
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers = head.lower()
        body = bytearray()
        first: float | None = None
        if b"transfer-encoding: chunked" in headers:
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                chunk = await reader.readexactly(size + 2)
                if first is None:
                    first = time.perf_counter()
                body += chunk[:-2]
        else:
            start = headers.index(b"content-length:") + 15
            length = int(headers[start : headers.index(b"\r\n", start)])
            body += await reader.readexactly(length)
            first = time.perf_counter()
        ended = time.perf_counter()
        if b"connection: close" in headers:
            writer.close()
            self.writer = None
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {bytes(body[:300])!r}")
        return (first - started) * 1000, (ended - started) * 1000, bytes(body)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def request_bytes(url: str, model: str, stream: bool, token: str | None) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    payload = json.dumps(body).encode()
    parts = urlsplit(url)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def closed_loop(
    url: str, raw: bytes, stream: bool, concurrency: int, total: int
) -> tuple[list[float], list[float], float]:
    """Run `total` requests from `concurrency` workers; return latencies, TTFBs and RPS."""
    latencies: list[float] = []
    ttfbs: list[float] = []
    counter = iter(range(total))
    expect = b"[DONE]" if stream else b'"choices"'

    async def worker() -> None:
        connection = Connection(url)
        try:
            for _ in counter:
                ttfb, total_ms, body = await connection.call(raw)
                if expect not in body:
                    raise RuntimeError(f"unexpected answer: {body[:300]!r}")
                latencies.append(total_ms)
                ttfbs.append(ttfb)
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, ttfbs, total / (time.perf_counter() - started)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the servers -------------------------------------------------------------------------


def bench_token(token: str) -> str | None:
    # The bearer hook: the same hashed-cache hot path a service key takes, minus Django.
    return "bench" if token == BENCH_TOKEN else None


def bench_config(routes_file: str, admin_url: str) -> GatewayConfig:
    from athena_admin.gateway import GatewayConfig

    return GatewayConfig(
        admin_url=admin_url,
        routes_file=routes_file,
        bearer_authenticator=bench_token,
        router_options={"metrics_interval": 0.5},
    )


def setup_django() -> None:
    """Set Django up as production does, though this gateway never queries it.

    Why: its objects are most of the heap, which is what a full garbage collection walks.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "athena_admin.settings")
    import django

    django.setup()


def bench_worker_app() -> GatewayApp:
    """uvicorn's app factory for --workers N > 1, called in each worker process."""
    from athena_admin.gateway.workers import build_worker_app

    setup_django()
    return build_worker_app(bench_config(os.environ["BENCH_ROUTES_FILE"], os.environ["BENCH_ADMIN_URL"]))  # fmt: skip


def serve_gateway(port: int, routes_file: str, admin_url: str, workers: int) -> None:
    """Child process: run the gateway as production does (`athena_admin.gateway.__main__`)."""
    if workers > 1:
        from athena_admin.gateway.workers import serve_workers

        # The factory runs in freshly spawned workers: hand it its settings in the
        # environment. They import this file as `gateway_bench` (its folder is on sys.path).
        os.environ["BENCH_ROUTES_FILE"] = routes_file
        os.environ["BENCH_ADMIN_URL"] = admin_url
        serve_workers("gateway_bench:bench_worker_app", workers=workers, host="127.0.0.1", port=port)  # fmt: skip
        return
    setup_django()
    from athena_admin.gateway import create_app
    from athena_admin.gateway.__main__ import serve

    # One process, uvloop and httptools, start-up objects frozen out of the GC, as serve() does.
    serve(create_app(bench_config(routes_file, admin_url)), host="127.0.0.1", port=port)


class Process:
    def __init__(self, args: list[str], url: str, ready_path: str, env: dict[str, str] | None = None, log: Path | None = None) -> None:  # fmt: skip
        out = log.open("wb") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.url = url
        deadline = time.monotonic() + 120
        import urllib.request

        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{args[:3]} exited early (see {log})")
            try:
                with urllib.request.urlopen(url + ready_path, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{args[:3]} did not become ready")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_litellm(upstream: str, workdir: Path) -> Process | None:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print(f"LiteLLM is not installed at {LITELLM_VENV}; compare with /work/shared/ANCHORS.md")
        return None
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: bench\n"
        "    litellm_params:\n"
        "      model: openai/m\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: none\n"
    )
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOCAL_BLOG_POSTS": "True",
        "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
        "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
        "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
        "LITELLM_MASTER_KEY": LITELLM_KEY,
    }
    env.pop("DATABASE_URL", None)  # LiteLLM would try to use it; the anchor ran without one
    args = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]  # fmt: skip
    return Process(
        args, f"http://127.0.0.1:{port}", "/health/readiness", env, workdir / "litellm.log"
    )


# --- the run -----------------------------------------------------------------------------


async def measure(
    targets: dict[str, tuple[str, bytes, bytes]], stream: bool, c: int, n: int, n_litellm: int
) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """Interleave the targets in two rounds; return latencies, TTFBs and RPS per target."""
    results: dict[str, tuple[list[float], list[float], list[float]]] = {
        name: ([], [], []) for name in targets
    }
    for url, plain, streamed in targets.values():  # warm up pools and caches
        await closed_loop(url, streamed if stream else plain, stream, c, min(100, 2 * c))
    for _ in range(2):
        for name, (url, plain, streamed) in targets.items():
            count = (n_litellm if name == "LiteLLM" else n) // 2
            lat, ttfb, rps = await closed_loop(url, streamed if stream else plain, stream, c, count)
            results[name][0].extend(lat)
            results[name][1].extend(ttfb)
            results[name][2].append(rps)
    return results


async def run(quick: bool, with_litellm: bool, paced_ms: float, workers: int) -> None:
    from tests.upstreams import serve_in_subprocess

    n1, n64 = (100, 500) if quick else (300, 2000)
    l1, l64 = (50, 128) if quick else (150, 640)
    if paced_ms:  # each answer takes 16 x paced_ms: fewer requests give as many samples
        n1, n64, l1, l64 = n1 // 5, n64 // 2, l1 // 5, l64 // 2
    pacing = ["--chunk-delay-ms", str(paced_ms)] if paced_ms else []
    upstream = serve_in_subprocess("openai", "--words", "16", *pacing)
    admin = serve_in_subprocess("admin")
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    routes = workdir / "routes.json"
    routes.write_text(json.dumps({"routes": [{"model": "bench", "targets": [{"backend_type": "openai", "endpoint_url": upstream.url, "upstream_model": "m", "max_tokens": 64}]}]}))  # fmt: skip
    port = free_port()
    gateway = Process(
        [
            sys.executable,
            __file__,
            "--serve-gateway",
            str(port),
            str(routes),
            admin.url,
            "--workers",
            str(workers),
        ],  # fmt: skip
        f"http://127.0.0.1:{port}",
        "/health",
        log=workdir / "gateway.log",
    )
    if workers > 1:
        time.sleep(3)  # the ready check reached one worker: let the others finish starting
    litellm = start_litellm(upstream.url, workdir) if with_litellm else None
    try:
        targets = {
            "direct": (upstream.url, None, "m"),
            "gateway": (gateway.url, BENCH_TOKEN, "bench"),
        }
        if litellm is not None:
            targets["LiteLLM"] = (litellm.url, LITELLM_KEY, "bench")
        prepared = {
            name: (
                url,
                request_bytes(url, model, False, token),
                request_bytes(url, model, True, token),
            )
            for name, (url, token, model) in targets.items()
        }
        rows = []
        for stream in (True,) if paced_ms else (False, True):
            for c, n, nl in ((1, n1, l1), (64, n64, l64)):
                results = await measure(prepared, stream, c, n, nl)
                rows.append((stream, c, results))
    finally:
        gateway.stop()
        if litellm is not None:
            litellm.stop()
        upstream.stop()
        admin.stop()
    report(rows, litellm is not None, paced_ms, workers)


def report(rows: list, with_litellm: bool, paced_ms: float, workers: int) -> None:
    pace = f", {paced_ms:g} ms between chunks" if paced_ms else ""
    print(f"\nLatency in ms (closed loop, POST /v1/chat/completions, 16-chunk answers{pace}).")
    print("Added = the same percentile minus the direct call's; TTFB = first body byte.\n")
    head = "| stream | c | direct p50 / p99 | gateway p50 / p95 / p99 | gateway added p50 / p99 | TTFB p50 direct / gateway |"
    sep = "|---|---|---|---|---|---|"
    if with_litellm:
        head += " LiteLLM p50 / p99 | LiteLLM added p50 |"
        sep += "---|---|"
    head += " RPS direct / gateway" + (" / LiteLLM" if with_litellm else "") + " |"
    sep += "---|"
    print(head)
    print(sep)
    verdict = ""
    for stream, c, results in rows:
        d_lat, d_ttfb, d_rps = results["direct"]
        g_lat, g_ttfb, g_rps = results["gateway"]
        dp50, dp99 = statistics.median(d_lat), pct(d_lat, 0.99)
        gp50, gp95, gp99 = statistics.median(g_lat), pct(g_lat, 0.95), pct(g_lat, 0.99)
        line = (
            f"| {'yes' if stream else 'no'} | {c} | {dp50:.2f} / {dp99:.2f} | "
            f"{gp50:.2f} / {gp95:.2f} / {gp99:.2f} | {gp50 - dp50:+.2f} / {gp99 - dp99:+.2f} | "
            f"{statistics.median(d_ttfb):.2f} / {statistics.median(g_ttfb):.2f} |"
        )
        rps = f"{statistics.mean(d_rps):,.0f} / {statistics.mean(g_rps):,.0f}"
        if with_litellm:
            l_lat, _, l_rps = results["LiteLLM"]
            lp50 = statistics.median(l_lat)
            line += f" {lp50:.1f} / {pct(l_lat, 0.99):.1f} | {lp50 - dp50:+.1f} |"
            rps += f" / {statistics.mean(l_rps):,.0f} ({statistics.mean(g_rps) / statistics.mean(l_rps):.1f}x)"
        print(f"{line} {rps} |")
        if not stream and c == 64:
            ok = statistics.mean(g_rps) >= 500 and gp95 <= 100
            verdict = (
                f"\n{_processes(workers)}, non-streaming, c=64: {statistics.mean(g_rps):,.0f} requests/s, "
                f"p95 {gp95:.1f} ms -> {'meets' if ok else 'misses'} the >= 500 req/s at p95 <= 100 ms goal."
            )
    print(verdict)


def _processes(workers: int) -> str:
    return "One gateway process" if workers == 1 else f"A gateway of {workers} worker processes"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM proxy")
    parser.add_argument(
        "--paced", type=float, default=0.0, metavar="MS", help="upstream pause between chunks"
    )
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N", help="gateway worker processes (default 1)"
    )
    parser.add_argument("--serve-gateway", nargs=3, metavar=("PORT", "ROUTES", "ADMIN"), help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.serve_gateway:
        serve_gateway(int(args.serve_gateway[0]), args.serve_gateway[1], args.serve_gateway[2], args.workers)  # fmt: skip
    else:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        if args.workers < 1:
            parser.error(f"--workers must be >= 1, got {args.workers}")
        asyncio.run(run(args.quick, not args.no_litellm, args.paced, args.workers))
