"""Benchmark mlx_server against raw mlx-lm and mlx_lm.server on the same model, same run.

    .venv/bin/python bench/mlx_bench.py                  # tiny and large models
    .venv/bin/python bench/mlx_bench.py --sizes tiny --tokens 64 --rounds 1   # a smoke run
    .venv/bin/python bench/mlx_bench.py --features      # constrained decoding, embeddings

Prints a markdown table (paste into docs/benchmarks.md). Only ratios measured in one
run compare: these machines are noisy. Every figure is decode throughput measured from
the first token to the last, so prompt processing and HTTP setup do not dilute it,
except "aggregate", which is total completion tokens over wall time from the first
request to the last answer (what a user of a busy server sees).

The load generator is as light as a client can be, and the same for both servers: one
keep-alive HTTP/1.1 connection per stream on raw asyncio streams (`Connection`), which
reads the body without parsing its events. On the 2-core machines this runs on, the client
shares the cores with the server under test, whose MLX compute alone keeps ~1.25 of them
busy: every microsecond the client spends per token is taken from the server being
measured. httpx parsing each SSE line cost ~25-35 us of CPU per token, about a tenth of a
core with 8 streams; a deployed server's clients run on other machines. Per stream it
records when the first `data:` event arrived (time to first token; mlx_lm.server's
`: keepalive` comments during prefill do not count) and when the body ended, and takes the
token count from the one JSON object it parses, the final `usage` event that both servers
send when asked (`stream_options.include_usage`; OpenAI's `completion_tokens`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Why is the sky blue? Explain it to a child."
CONCURRENCY = 8
FIRST_EVENT = re.compile(rb"data: ")
_NONCE = itertools.count()


def fresh_prompt() -> str:
    """Return a prompt no server has seen: mlx_lm.server caches prompt prefixes, and a
    repeated prompt would skip its prefill and flatter its figures."""
    return f"#{next(_NONCE)} {PROMPT}"


@dataclass
class StreamResult:
    """One streamed completion as the client saw it."""

    tokens: int
    ttft_s: float
    total_s: float
    first_to_last_s: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- raw mlx-lm, in this process --------------------------------------------------------


class RawMLX:
    """The model loaded in this process, driven by mlx-lm's own generate functions."""

    def __init__(self, model_dir: Path) -> None:
        from mlx_lm.utils import load

        self.model, self.tokenizer = load(str(model_dir))[:2]
        self.single(16)  # warm-up: compile kernels, fault in weights
        self.batch(16)

    def single(self, tokens: int) -> tuple[float, float]:
        """Return stream_generate's decode tok/s and its end-to-end tok/s (prefill included)."""
        from mlx_lm import stream_generate

        start = time.perf_counter()
        *_, last = stream_generate(self.model, self.tokenizer, fresh_prompt(), max_tokens=tokens)
        wall = time.perf_counter() - start
        return float(last.generation_tps), last.generation_tokens / wall

    def batch(self, tokens: int) -> tuple[float, float]:
        """Return batch_generate's decode tok/s for 8 prompts, and tokens over wall time.

        The first excludes prefill; the second is like-for-like with the servers'
        aggregate, which is measured over wall time too.
        """
        from mlx_lm import batch_generate

        prompts = [self.tokenizer.encode(fresh_prompt()) for _ in range(CONCURRENCY)]
        start = time.perf_counter()
        result = batch_generate(self.model, self.tokenizer, prompts, max_tokens=tokens)
        wall = time.perf_counter() - start
        return float(result.stats.generation_tps), result.stats.generation_tokens / wall


# ---- HTTP servers -----------------------------------------------------------------------


class Server:
    """A server subprocess (ours or mlx_lm.server) and the model name it expects."""

    def __init__(self, kind: str, model_dir: Path) -> None:
        self.kind = kind
        self.port = free_port()
        if kind == "mlx_server":
            args = [
                "-m",
                "mlx_server",
                "--model",
                str(model_dir),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ]
            self.model = model_dir.name
        else:
            args = [
                "-m",
                "mlx_lm.server",
                "--model",
                str(model_dir),
                "--port",
                str(self.port),
                "--log-level",
                "WARNING",
            ]
            self.model = "default_model"
        self.process = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base_url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        path = "/health" if self.kind == "mlx_server" else "/v1/models"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.process.returncode}")
            try:
                if httpx.get(self.base_url + path, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.kind} did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a request and reads the whole answer.

    The body is read as it comes, without parsing it: chunked, sized, or (an HTTP/1.0
    answer, which is what mlx_lm.server sends) up to its `data: [DONE]` event, so the end
    of a stream is the same event for both servers, not the closing of the socket.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(
        self, path: str, payload: dict[str, object], first_token: re.Pattern[bytes] = FIRST_EVENT
    ) -> tuple[float, float, bytes]:
        """Return (time until `first_token` arrived, time to the end of the body) in s, and
        the body. The default marks the first `data:` event."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        reader, writer = self.reader, self.writer
        assert reader is not None
        body = json.dumps(payload).encode()
        started = time.perf_counter()
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.server.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = (await reader.readuntil(b"\r\n\r\n")).lower()
        status = int(head[9:12])
        answer = bytearray()
        first: float | None = None
        if b"transfer-encoding: chunked" in head:
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                answer += (await reader.readexactly(size + 2))[:-2]
                if first is None and first_token.search(answer):
                    first = time.perf_counter()
            await reader.readuntil(b"\r\n")
        elif b"content-length:" in head:
            at = head.index(b"content-length:") + 15
            answer += await reader.readexactly(int(head[at : head.index(b"\r\n", at)]))
        else:
            while not answer.endswith(b"data: [DONE]\n\n") and (piece := await reader.read(65536)):
                answer += piece
                if first is None and first_token.search(answer):
                    first = time.perf_counter()
        ended = time.perf_counter()
        if head.startswith(b"http/1.0") or b"connection: close" in head or status != 200:
            self.close()
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {bytes(answer[:300])!r}")
        return (first or ended) - started, ended - started, bytes(answer)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


def completion_tokens(body: bytes) -> int:
    """Read `usage.completion_tokens` from the stream's usage event (the only parse).

    `"usage"` with bare quotes cannot occur inside generated text: JSON escapes its quotes.
    """
    usage = body.rfind(b'"usage"')
    at = body.rfind(b"data: {", 0, usage)
    if usage < 0 or at < 0:
        raise RuntimeError(f"no usage in the stream: {body[-300:]!r}")
    event = json.loads(body[at + 6 : body.index(b"\n", at)])
    return int(event["usage"]["completion_tokens"])


async def stream_completion(
    connection: Connection, prompt: str, max_tokens: int, **sampling: object
) -> StreamResult:
    """Stream one completion; count tokens from usage."""
    server = connection.server
    payload = {
        "model": server.model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.0,
        **sampling,
    }
    ttft, total, body = await connection.post("/v1/completions", payload)
    # The body ends right after the last token's event (then only the finish, usage and
    # [DONE] events): first to last token is first event to end of body.
    return StreamResult(completion_tokens(body), ttft, total, total - ttft)


def chat_text(body: bytes) -> str:
    """Join the `delta.content` of a streamed chat answer (parsed only for the next turn)."""
    text = []
    for line in body.split(b"\n"):
        if line.startswith(b"data: {"):
            for choice in json.loads(line[6:]).get("choices", ()):
                text.append(choice.get("delta", {}).get("content") or "")
    return "".join(text)


# Non-empty content in a chat delta, however each server spaces its JSON.
FIRST_CONTENT = re.compile(rb'"content": ?"[^"]')
CHAT_TURNS = 6
SYSTEM = "You answer questions about the weather, briefly and kindly. " * 40  # ~480 tokens


async def conversation(server: Server, answer_tokens: int = 48) -> list[float]:
    """Return the time to first token of each turn of a chat that resends its history.

    Both servers keep a prompt cache; a turn that reuses the last turn's cache prefills only
    the new message, so the figure shows how well each one reuses it.
    """
    connection = Connection(server)
    messages = [{"role": "system", "content": f"#{next(_NONCE)} {SYSTEM}"}]
    ttfts = []
    try:
        for turn in range(CHAT_TURNS):
            messages.append({"role": "user", "content": f"And what about day {turn}?"})
            payload = {
                "model": server.model,
                "messages": messages,
                "max_tokens": answer_tokens,
                "stream": True,
                "temperature": 0.0,
            }
            # The first event may carry only the role: time the first piece of content.
            ttft, _, body = await connection.post(
                "/v1/chat/completions", payload, first_token=FIRST_CONTENT
            )
            ttfts.append(ttft)
            messages.append({"role": "assistant", "content": chat_text(body)})
    finally:
        connection.close()
    return ttfts


async def single_stream(server: Server, tokens: int) -> tuple[float, float]:
    """Return one streamed request's decode tok/s (first chunk to last) and end-to-end tok/s."""
    connection = Connection(server)
    try:
        result = await stream_completion(connection, fresh_prompt(), tokens)
    finally:
        connection.close()
    decode = (result.tokens - 1) / max(result.first_to_last_s, 1e-9)
    return decode, result.tokens / result.total_s


async def aggregate(server: Server, tokens: int) -> float:
    """Return total tok/s of 8 concurrent streamed requests, wall time end to end."""
    connections = [Connection(server) for _ in range(CONCURRENCY)]
    try:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(stream_completion(c, fresh_prompt(), tokens) for c in connections)
        )
        return sum(r.tokens for r in results) / (time.perf_counter() - start)
    finally:
        for connection in connections:
            connection.close()


BUSY_TOKENS = 1800  # within the tiny model's 2,048-token context


async def under_load(server: Server, tokens: int) -> dict[str, float]:
    """With 7 long streams running: TTFT of one more (median of 3), then a sampled request
    unseeded and seeded."""
    connections = [Connection(server) for _ in range(CONCURRENCY)]
    last = connections[0]  # one keep-alive connection for the probes (mlx_lm.server closes each)
    try:
        # The same short request on the idle server: its own prefill and first step, which
        # the goal allows on top of the wait for the busy batch (fastest of three).
        idle = [await stream_completion(last, fresh_prompt(), 8) for _ in range(3)]
        # Long enough to outlast the joins on either model (the tiny one decodes ~1,000
        # tokens/s per stream); cancelled once the probes are done.
        busy = [
            asyncio.create_task(stream_completion(c, fresh_prompt(), BUSY_TOKENS))
            for c in connections[1:]
        ]
        await asyncio.sleep(0.5)
        joined = [await stream_completion(last, fresh_prompt(), 8) for _ in range(3)]
        if any(task.done() for task in busy):
            raise RuntimeError("the busy streams ended before the joins: raise BUSY_TOKENS")
        unseeded = await stream_completion(last, fresh_prompt(), 32, temperature=0.8)
        # mlx_lm.server lets the batch drain before a seeded request: on the large model
        # that is the busy streams' whole length (the flaw this row shows).
        seeded = await stream_completion(last, fresh_prompt(), 32, temperature=0.8, seed=7)
        for task in busy:
            task.cancel()
        await asyncio.gather(*busy, return_exceptions=True)
    finally:
        for connection in connections:
            connection.close()
    return {
        "ttft_busy_ms": statistics.median(r.ttft_s for r in joined) * 1000,
        "ttft_idle_ms": min(r.ttft_s for r in idle) * 1000,
        "unseeded_ms": unseeded.total_s * 1000,
        "seeded_ms": seeded.total_s * 1000,
    }


def measure_model(model_dir: Path, tokens: int, rounds: int) -> dict[str, dict[str, float]]:
    """Measure raw mlx-lm and both servers, interleaved round by round so noise hits all alike."""
    servers = {kind: Server(kind, model_dir) for kind in ("mlx_server", "mlx_lm.server")}
    try:
        for server in servers.values():
            server.wait_ready()
            asyncio.run(single_stream(server, 16))  # load + warm-up
            asyncio.run(aggregate(server, 16))
        raw = RawMLX(model_dir)
        metrics = ("decode", "end_to_end", "aggregate", "batch_decode")
        samples: dict[str, dict[str, list[float]]] = {
            name: {m: [] for m in metrics} for name in ("raw", *servers)
        }

        def record(name: str, single: tuple[float, float]) -> None:
            samples[name]["decode"].append(single[0])
            samples[name]["end_to_end"].append(single[1])

        for _ in range(rounds):
            record("raw", raw.single(tokens))
            for kind, server in servers.items():
                record(kind, asyncio.run(single_stream(server, tokens)))
            batch_decode, batch_wall = raw.batch(tokens)
            samples["raw"]["batch_decode"].append(batch_decode)
            samples["raw"]["aggregate"].append(batch_wall)
            for kind, server in servers.items():
                samples[kind]["aggregate"].append(asyncio.run(aggregate(server, tokens)))
        figures = {
            name: {k: statistics.median(v) for k, v in d.items() if v}
            for name, d in samples.items()
        }
        for kind, server in servers.items():
            # Before the load test: mlx_lm.server goes on decoding the cancelled busy streams.
            ttfts = asyncio.run(conversation(server))
            figures[kind].update(chat_first_ms=ttfts[0] * 1000, chat_last_ms=ttfts[-1] * 1000)
            figures[kind].update(asyncio.run(under_load(server, tokens)))
        return figures
    finally:
        for server in servers.values():
            server.stop()


def ensure_model(size: str) -> Path:
    result = subprocess.run(
        [sys.executable, "scripts/make_tiny_model.py", "--size", size],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,large")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per request")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument(
        "--features",
        action="store_true",
        help="only the rows of constrained decoding and embeddings (bench/mlx_features.py)",
    )
    args = parser.parse_args()
    if args.features:
        import mlx_features

        for size in args.sizes.split(","):
            model_dir = ensure_model(size)
            print(f"[{size}] measuring features on {model_dir} ...", file=sys.stderr)
            figures = mlx_features.measure(model_dir, args.tokens, args.rounds)
            mlx_features.print_rows(f"{model_dir.name} ({size})", figures)
        return 0
    tables = []
    for size in args.sizes.split(","):
        model_dir = ensure_model(size)
        print(f"[{size}] measuring {model_dir} ...", file=sys.stderr)
        tables.append(
            (f"{model_dir.name} ({size})", measure_model(model_dir, args.tokens, args.rounds))
        )

    print(
        f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()}; "
        f"{args.tokens} tokens per request, {CONCURRENCY} concurrent clients, greedy, every "
        f"prompt new; median of {args.rounds} interleaved rounds.\n"
    )
    print(
        "| model | metric | raw mlx-lm | mlx_server | mlx_lm.server | mlx_server vs raw "
        "| mlx_server vs mlx_lm.server | goal |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, f in tables:
        raw, ours, ref = f["raw"], f["mlx_server"], f["mlx_lm.server"]
        for key, name in (("decode", "first to last token"), ("end_to_end", "end to end")):
            print(
                f"| {label} | single stream, {name}, tok/s | {raw[key]:,.0f} | {ours[key]:,.0f} "
                f"| {ref[key]:,.0f} | {ours[key] / raw[key]:.0%} | {ours[key] / ref[key]:.2f}x "
                f"| >= 97% of raw |"
            )
        print(
            f"| {label} | aggregate, 8 clients, tok/s over wall time | {raw['aggregate']:,.0f} "
            f"(batch_generate; {raw['batch_decode']:,.0f} excluding prefill) "
            f"| {ours['aggregate']:,.0f} | {ref['aggregate']:,.0f} "
            f"| {ours['aggregate'] / raw['aggregate']:.0%} "
            f"({ours['aggregate'] / raw['batch_decode']:.0%} of decode-only) "
            f"| {ours['aggregate'] / ref['aggregate']:.2f}x | >= 80% of raw, >= 2x mlx_lm.server |"
        )
        print(
            f"| {label} | TTFT joining a busy batch (7 running) / on the idle server, ms | - "
            f"| {ours['ttft_busy_ms']:,.0f} / {ours['ttft_idle_ms']:,.0f} "
            f"| {ref['ttft_busy_ms']:,.0f} / {ref['ttft_idle_ms']:,.0f} | - "
            f"| {ref['ttft_busy_ms'] / ours['ttft_busy_ms']:.1f}x "
            f"| busy <= idle + 20 ms (ours: {ours['ttft_busy_ms'] - ours['ttft_idle_ms']:+,.0f}) |"
        )
        print(
            f"| {label} | chat TTFT, turn 1 / turn {CHAT_TURNS} (history resent), ms | - "
            f"| {ours['chat_first_ms']:,.0f} / {ours['chat_last_ms']:,.0f} "
            f"| {ref['chat_first_ms']:,.0f} / {ref['chat_last_ms']:,.0f} | - "
            f"| {ref['chat_last_ms'] / ours['chat_last_ms']:.1f}x | lower is better |"
        )
        print(
            f"| {label} | 32-token sampled request under load, unseeded / seeded, ms | - "
            f"| {ours['unseeded_ms']:,.0f} / {ours['seeded_ms']:,.0f} "
            f"| {ref['unseeded_ms']:,.0f} / {ref['seeded_ms']:,.0f} | - | - | seeded ~ unseeded |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
