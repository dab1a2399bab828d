"""The scenarios of the solo-path tests: FIRST decodes alone, SECOND joins it.

Each test runs on a server of its own (the `lone_server` fixture), so "alone" really means
alone and the move counters in /metrics count that test's requests only.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from .conftest import MODEL_NAME

FIRST = "Once upon a time there was a small model"
SECOND = "Why is the sky blue?"

Answer = tuple[str, int, str]  # text, completion tokens, finish reason


def counter(base_url: str, name: str) -> float:
    """Read one of the tiny model's counters from /metrics."""
    text = httpx.get(f"{base_url}/metrics").text
    prefix = f'{name}_total{{model="{MODEL_NAME}"}} '
    (line,) = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(line[len(prefix) :])


async def complete(
    http: httpx.AsyncClient, prompt: str, max_tokens: int, **options: object
) -> Answer:
    """Return the text, completion tokens and finish reason of a non-streamed completion."""
    body = {"model": MODEL_NAME, "prompt": prompt, "max_tokens": max_tokens, **options}
    answer = (await http.post("/v1/completions", json=body)).json()
    choice = answer["choices"][0]
    return choice["text"], answer["usage"]["completion_tokens"], choice["finish_reason"]


async def stream(
    http: httpx.AsyncClient, started: asyncio.Event, max_tokens: int, **options: object
) -> Answer:
    """Stream FIRST; set `started` once text has arrived (the request is decoding alone)."""
    body = {
        "model": MODEL_NAME,
        "prompt": FIRST,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        **options,
    }
    text, tokens, finish = "", 0, ""
    async with http.stream("POST", "/v1/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            for choice in event["choices"]:
                text += choice["text"]
                finish = choice["finish_reason"] or finish
            if text:
                started.set()
    return text, tokens, finish


@contextmanager
def first_streaming(http: httpx.Client) -> Iterator[None]:
    """Run the body while a long greedy FIRST streams; leaving it drops that client."""
    long = {"model": MODEL_NAME, "prompt": FIRST, "max_tokens": 1900, "stream": True}
    with http.stream("POST", "/v1/completions", json={**long, "temperature": 0}) as response:
        # Keep the iterator referenced: a dropped one closes the connection.
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data: {"))
        yield


def wait_until_idle(http: httpx.Client, within_s: float = 3.0) -> dict[str, int]:
    """Poll /health until no request is active (or the time is up); return it."""
    deadline = time.monotonic() + within_s
    while (health := http.get("/health").json())["active_requests"]:
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return dict(health)
