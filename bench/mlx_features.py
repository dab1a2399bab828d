"""The feature rows of the MLX benchmark: constrained decoding and embeddings (issue 13).

    .venv/bin/python bench/mlx_bench.py --features --sizes large --rounds 3

Measured on mlx_server alone (mlx_lm.server has neither grammar-constrained decoding nor an
embeddings endpoint), with the same light client as the other rows (mlx_bench.Connection):
- constrained vs unconstrained decode, tokens/s from the first content to the last token of a
  streamed chat answer, alone and with 8 clients (4 constrained, 4 free; the mean per stream
  against 8 free);
- time to the first content of a constrained answer whose grammar is cached, and of one with a
  new schema (compiled for it), against an unconstrained one, on the idle server;
- embeddings: tokens/s of `/v1/embeddings` over a batch of inputs against the raw mlx forward
  pass (`model.model`, the same padded batch and pooling) in this process.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from mlx_bench import (  # type: ignore[import-not-found]
    _NONCE,
    CONCURRENCY,
    FIRST_CONTENT,
    Connection,
    Server,
    completion_tokens,
)

# A schema whose answers run long (up to ~200 tokens) yet always end: a bounded list of
# bounded strings, so a random-weight model decodes long enough to measure.
LONG_SCHEMA = {
    "type": "object",
    "properties": {
        "notes": {
            "type": "array",
            "items": {"type": "string", "maxLength": 24},
            "minItems": 8,
            "maxItems": 8,
        }
    },
    "required": ["notes"],
}
EMBED_INPUTS = 32
EMBED_WORDS = 48


def _format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "bench", "schema": schema}}


async def chat(
    connection: Connection, max_tokens: int, schema: dict[str, Any] | None
) -> tuple[int, float, float]:
    """Stream one chat answer: (tokens, time to first content, first content to end) in s."""
    payload: dict[str, Any] = {
        "model": connection.server.model,
        "messages": [{"role": "user", "content": f"#{next(_NONCE)} Take notes."}],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 1.0,
        "seed": 1,
    }
    if schema is not None:
        payload["response_format"] = _format(schema)
    ttft, total, body = await connection.post(
        "/v1/chat/completions", payload, first_token=FIRST_CONTENT
    )
    return completion_tokens(body), ttft, total - ttft


async def single(server: Server, constrained: bool, tokens: int) -> float:
    """Decode tok/s of one streamed chat answer (first content to last token)."""
    connection = Connection(server)
    try:
        count, _, decode_s = await chat(connection, tokens, LONG_SCHEMA if constrained else None)
    finally:
        connection.close()
    return (count - 1) / max(decode_s, 1e-9)


async def mixed(server: Server, constrained: int, tokens: int) -> float:
    """Mean decode tok/s per stream (first content to last token) of 8 concurrent answers,
    `constrained` of them under the grammar.

    Per stream, not total over wall time: a constrained answer ends when its JSON does, before
    the free ones' budget, so a total over the wall time would count its shortness as slowness.
    """
    connections = [Connection(server) for _ in range(CONCURRENCY)]
    try:
        results = await asyncio.gather(
            *(
                chat(c, tokens, LONG_SCHEMA if i < constrained else None)
                for i, c in enumerate(connections)
            )
        )
        return statistics.mean((n - 1) / max(decode_s, 1e-9) for n, _, decode_s in results)
    finally:
        for connection in connections:
            connection.close()


async def first_content(server: Server, rounds: int) -> dict[str, float]:
    """Median time to first content, ms: unconstrained, constrained (cached), new schema."""
    connection = Connection(server)
    free, cached, fresh = [], [], []
    try:
        for _ in range(rounds):
            free.append((await chat(connection, 4, None))[1])
            cached.append((await chat(connection, 4, LONG_SCHEMA))[1])
            # A schema no request used before: its grammar is compiled for this request.
            schema = {**LONG_SCHEMA, "title": f"bench {next(_NONCE)}"}
            fresh.append((await chat(connection, 4, schema))[1])
    finally:
        connection.close()
    return {
        "ttft_free_ms": statistics.median(free) * 1000,
        "ttft_cached_ms": statistics.median(cached) * 1000,
        "ttft_new_schema_ms": statistics.median(fresh) * 1000,
    }


def embeddings(server: Server, model_dir: Path, rounds: int) -> dict[str, float]:
    """Tokens/s of /v1/embeddings against the raw forward pass over the same batch."""
    import httpx
    import mlx.core as mx
    from mlx_lm.utils import load

    model, tokenizer = load(str(model_dir))[:2]
    texts = [
        " ".join(f"word{(i * 7 + j) % 97}" for j in range(EMBED_WORDS)) for i in range(EMBED_INPUTS)
    ]
    token_lists = [tokenizer.encode(t) for t in texts]
    tokens = sum(len(t) for t in token_lists)

    def raw() -> float:
        start = time.perf_counter()
        width = max(len(t) for t in token_lists)
        padded = mx.array([t + [0] * (width - len(t)) for t in token_lists])
        lengths = mx.array([len(t) for t in token_lists])
        hidden = model.model(padded).astype(mx.float32)
        real = (mx.arange(width)[None, :] < lengths[:, None]).astype(mx.float32)
        pooled = (hidden * real[..., None]).sum(axis=1) / lengths[:, None].astype(mx.float32)
        mx.eval(pooled / mx.linalg.norm(pooled, axis=-1, keepdims=True))
        return tokens / (time.perf_counter() - start)

    def served() -> float:
        body = {"model": server.model, "input": texts}
        start = time.perf_counter()
        answer = httpx.post(f"{server.base_url}/v1/embeddings", json=body, timeout=120)
        elapsed = time.perf_counter() - start
        assert json.loads(answer.content)["usage"]["prompt_tokens"] == tokens
        return tokens / elapsed

    raw(), served()  # warm-up
    raws, serveds = [], []
    for _ in range(rounds):
        raws.append(raw())
        serveds.append(served())
    return {"embed_raw": statistics.median(raws), "embed_served": statistics.median(serveds)}


def measure(model_dir: Path, tokens: int, rounds: int) -> dict[str, float]:
    """Run every feature row on one model, interleaving constrained and free rounds."""
    server = Server("mlx_server", model_dir)
    try:
        server.wait_ready()
        asyncio.run(single(server, True, 16))  # load, warm-up, grammar compiled once
        samples: dict[str, list[float]] = {k: [] for k in ("free", "constrained", "mix", "all")}
        for _ in range(rounds):
            samples["free"].append(asyncio.run(single(server, False, tokens)))
            samples["constrained"].append(asyncio.run(single(server, True, tokens)))
            samples["all"].append(asyncio.run(mixed(server, 0, tokens)))
            samples["mix"].append(asyncio.run(mixed(server, CONCURRENCY // 2, tokens)))
        figures = {k: statistics.median(v) for k, v in samples.items()}
        figures.update(asyncio.run(first_content(server, max(rounds, 3))))
        figures.update(embeddings(server, model_dir, rounds))
        return figures
    finally:
        server.stop()


def print_rows(label: str, f: dict[str, float]) -> None:
    """Print the feature rows of one model as markdown table rows."""
    print("| model | metric | unconstrained / raw | mlx_server | ratio | goal |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {label} | JSON-schema decode, one stream, tok/s | {f['free']:,.0f} "
        f"| {f['constrained']:,.0f} | {f['constrained'] / f['free']:.0%} | >= 90% |"
    )
    print(
        f"| {label} | 8 clients (4 constrained + 4 free) vs 8 free, tok/s per stream "
        f"| {f['all']:,.0f} | {f['mix']:,.0f} | {f['mix'] / f['all']:.0%} | >= 90% |"
    )
    print(
        f"| {label} | time to first content, free / constrained (cached grammar) / new schema, "
        f"ms | {f['ttft_free_ms']:,.1f} | {f['ttft_cached_ms']:,.1f} / "
        f"{f['ttft_new_schema_ms']:,.1f} | {f['ttft_cached_ms'] - f['ttft_free_ms']:+,.1f} / "
        f"{f['ttft_new_schema_ms'] - f['ttft_free_ms']:+,.1f} ms | <= +20 ms |"
    )
    print(
        f"| {label} | embeddings, {EMBED_INPUTS} inputs, tokens/s (raw forward pass) "
        f"| {f['embed_raw']:,.0f} | {f['embed_served']:,.0f} "
        f"| {f['embed_served'] / f['embed_raw']:.0%} | >= 90% |"
    )
