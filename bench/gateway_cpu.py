"""The gateway's own CPU time per request, per path: a figure wall-clock noise cannot move.

    .venv/bin/python bench/gateway_cpu.py [-n 400] [--repeats 3] [--concurrency 8]
                                          [--upstream openai|ollama|both] [--path PATH]

Why CPU time: on a shared 2-core machine the load generator, the upstream and the gateway
compete for the cores, so latencies swing with whatever else runs; the CPU the gateway
process spends per request is what turns into queueing at high concurrency, and it barely
moves with load. Read from /proc/<pid>/task/*/schedstat (nanoseconds on CPU, every thread),
or /proc/<pid>/stat (utime + stime, 10 ms ticks) where schedstat is missing.

The gateway runs in its own process as `python -m athena_admin.gateway` runs it
(`athena_admin.gateway.__main__.serve`: uvloop, httptools), with a bearer-token hook for
auth (the same cached path a service key takes, minus Django) and a stand-in admin
receiving its metrics. Upstreams: the test servers (tests/upstreams), 16-chunk answers, no
delay. For each client path (Ollama generate/chat, OpenAI completions/chat, stream or not)
and each upstream protocol, a closed loop of N requests runs `--repeats` times after a
warm-up; the table shows the minimum CPU per request over the repeats (the run least
disturbed by the neighbours), in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from gateway_bench import (  # noqa: E402
    BENCH_TOKEN,
    Connection,
    Process,
    free_port,
    serve_gateway,
)

# (client path, body builder): the request each client protocol sends.
PATHS = ("/api/generate", "/api/chat", "/v1/completions", "/v1/chat/completions")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def request_body(path: str, model: str, stream: bool) -> dict[str, object]:
    messages = [{"role": "user", "content": "hi"}]
    if path == "/api/generate":
        return {"model": model, "prompt": "hi", "stream": stream, "options": {"num_predict": 64}}
    if path == "/api/chat":
        return {"model": model, "messages": messages, "stream": stream}
    body: dict[str, object] = {"model": model, "max_tokens": 64, "stream": stream}
    if path == "/v1/completions":
        body["prompt"] = "hi"
    else:
        body["messages"] = messages
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def raw_request(port: int, path: str, model: str, stream: bool) -> bytes:
    payload = json.dumps(request_body(path, model, stream)).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {BENCH_TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def expected_marker(path: str, stream: bool) -> bytes:
    """A byte string every complete answer on this path contains."""
    if path.startswith("/api/"):
        return b'"done":true'
    return b"data: [DONE]" if stream else b'"choices"'


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of pid so far."""
    tasks = Path(f"/proc/{pid}/task")
    try:
        return sum(int((t / "schedstat").read_text().split()[0]) for t in tasks.iterdir()) / 1e9
    except (FileNotFoundError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


async def closed_loop(port: int, raw: bytes, marker: bytes, concurrency: int, total: int) -> None:
    counter = iter(range(total))

    async def worker() -> None:
        connection = Connection(f"http://127.0.0.1:{port}")
        try:
            for _ in counter:
                _, _, body = await connection.call(raw)
                if marker not in body:
                    raise RuntimeError(f"unexpected answer: {body[:300]!r}")
        finally:
            connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def cpu_per_request(
    pid: int, port: int, raw: bytes, marker: bytes, args: argparse.Namespace
) -> list[float]:
    """Microseconds of gateway CPU per request, one figure per repeat."""
    await closed_loop(port, raw, marker, args.concurrency, max(50, args.n // 4))  # warm-up
    figures = []
    for _ in range(args.repeats):
        before = cpu_seconds(pid)
        await closed_loop(port, raw, marker, args.concurrency, args.n)
        figures.append((cpu_seconds(pid) - before) / args.n * 1e6)
    return figures


def write_routes(workdir: Path, upstreams: dict[str, str]) -> Path:
    routes = [
        {
            "model": kind,
            "targets": [
                {"backend_type": kind, "endpoint_url": url, "upstream_model": "m", "max_tokens": 64}
            ],
        }
        for kind, url in upstreams.items()
    ]
    path = workdir / "routes.json"
    path.write_text(json.dumps({"routes": routes}))
    return path


async def run(args: argparse.Namespace) -> None:
    from tests.upstreams import serve_in_subprocess

    kinds = ("openai", "ollama") if args.upstream == "both" else (args.upstream,)
    servers = {kind: serve_in_subprocess(kind, "--words", "16") for kind in kinds}
    admin = serve_in_subprocess("admin")
    workdir = Path(tempfile.mkdtemp(prefix="gateway-cpu-"))
    routes = write_routes(workdir, {kind: s.url for kind, s in servers.items()})
    port = free_port()
    gateway = Process(
        [sys.executable, __file__, "--serve-gateway", str(port), str(routes), admin.url],
        f"http://127.0.0.1:{port}",
        "/health",
        log=workdir / "gateway.log",
    )
    paths = [args.path] if args.path else PATHS
    print(f"\nGateway CPU per request, us (min over {args.repeats} x {args.n} requests, "
          f"c={args.concurrency}; all repeats in brackets).\n")  # fmt: skip
    print("| client path | stream | upstream | CPU us/request | repeats |")
    print("|---|---|---|---:|---|")
    try:
        for path in paths:
            for stream in (False, True):
                for kind in kinds:
                    raw = raw_request(port, path, kind, stream)
                    marker = expected_marker(path, stream)
                    figures = await cpu_per_request(gateway.proc.pid, port, raw, marker, args)
                    spread = ", ".join(f"{f:.0f}" for f in figures)
                    print(
                        f"| {path} | {'yes' if stream else 'no'} | {kind} | "
                        f"{min(figures):.0f} | {spread} |",
                        flush=True,
                    )
    finally:
        gateway.stop()
        for server in servers.values():
            server.stop()
        admin.stop()


# --- in process: the gateway's own layer alone ---------------------------------------------


class InstantRouter:
    """Stands in for LLMRouter: answers every request at once, 16 pieces, no I/O.

    What the gateway costs on top of the router (parsing, auth, rendering, headers, metrics,
    ASGI plumbing), with nothing else in the figure.
    """

    def __init__(self) -> None:
        from routing import Finish, Started, Target, TextDelta

        target = Target("openai", "http://127.0.0.1:9", "m", model_name="bench")
        self._events = [
            Started(target),
            *(TextDelta(f" w{i}") for i in range(16)),
            Finish(finish_reason="stop", prompt_tokens=3, completion_tokens=16, model="bench",
                   backend_type=target.backend_type, endpoint_url=target.endpoint_url),
        ]  # fmt: skip

    async def events(self, request: object) -> AsyncIterator[object]:
        for event in self._events:
            yield event

    def has_route(self, model: str) -> bool:
        return True

    # What the gateway's /metrics collector reads.
    admin_lookups = metrics_dropped = metrics_buffered = 0

    def route_ages(self) -> dict[str, float]:
        return {}

    async def aclose(self) -> None:
        pass


async def asgi_call(app: Any, path: str, raw_body: bytes) -> bytes:
    """One request through the ASGI app, as uvicorn hands it over; return the body sent."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "server": ("127.0.0.1", 11400), "client": ("127.0.0.1", 50000),
        "headers": [
            (b"host", b"127.0.0.1:11400"), (b"authorization", f"Bearer {BENCH_TOKEN}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw_body)).encode()),
        ],
    }  # fmt: skip
    messages = [{"type": "http.request", "body": raw_body, "more_body": False}]
    sent: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # a client that stays: only a disconnect would come
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(sent)


async def run_in_process(args: argparse.Namespace) -> None:
    from athena_admin.gateway import GatewayConfig, create_app
    from athena_admin.gateway.__main__ import tune_gc

    config = GatewayConfig(admin_url=None, bearer_authenticator=lambda t: "bench" if t == BENCH_TOKEN else None)  # fmt: skip
    app = create_app(config, router=InstantRouter())  # type: ignore[arg-type]
    tune_gc()  # as serve() does
    print(f"\nGateway layer CPU per request, us, in process with an instant router "
          f"(min over {args.repeats} x {args.n}; all repeats in brackets).\n")  # fmt: skip
    print("| client path | stream | CPU us/request | repeats |")
    print("|---|---|---:|---|")
    for path in [args.path] if args.path else PATHS:
        for stream in (False, True):
            raw_body = json.dumps(request_body(path, "bench", stream)).encode()
            marker = expected_marker(path, stream)
            figures = []
            for i in range(args.repeats + 1):  # the first round warms up
                started = time.process_time()
                for _ in range(args.n):
                    body = await asgi_call(app, path, raw_body)
                    if marker not in body:
                        raise RuntimeError(f"unexpected answer: {body[:300]!r}")
                if i:
                    figures.append((time.process_time() - started) / args.n * 1e6)
            spread = ", ".join(f"{f:.1f}" for f in figures)
            print(f"| {path} | {'yes' if stream else 'no'} | {min(figures):.1f} | {spread} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=400, help="requests per repeat (default 400)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--upstream", choices=["openai", "ollama", "both"], default="both")
    parser.add_argument("--path", choices=PATHS, help="one client path only")
    parser.add_argument("--in-process", action="store_true", help="the gateway layer alone")
    parser.add_argument("--serve-gateway", nargs=3, metavar=("PORT", "ROUTES", "ADMIN"), help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.serve_gateway:
        port, routes_file, admin_url = args.serve_gateway
        serve_gateway(int(port), routes_file, admin_url, workers=1)
        return
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run_in_process(args) if args.in_process else run(args))


if __name__ == "__main__":
    main()
