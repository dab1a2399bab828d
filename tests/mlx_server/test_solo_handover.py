"""A lone request decodes on the solo path; a second one moves it into the batch losslessly.

Every request here runs on a server of its own, so "alone" really means alone: the first
request of each test finds the engine idle and is decoded outside the batch (solo.py).
"""

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import MODEL_NAME, ServerProcess, start_server

FIRST = "Once upon a time there was a small model"
SECOND = "Why is the sky blue?"


@pytest.fixture(scope="module")
def lone_server(
    tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server of its own: no other test's request shares its engine."""
    log = tmp_path_factory.mktemp("solo") / "log"
    running = start_server(["--model", str(tiny_model_path)], log)
    yield running
    running.stop()


async def complete(
    http: httpx.AsyncClient, prompt: str, max_tokens: int, **sampling: object
) -> str:
    body = {"model": MODEL_NAME, "prompt": prompt, "max_tokens": max_tokens, **sampling}
    response = await http.post("/v1/completions", json=body)
    return str(response.json()["choices"][0]["text"])


async def stream_until_done(
    http: httpx.AsyncClient, started: asyncio.Event, max_tokens: int, **sampling: object
) -> str:
    """Stream FIRST; set `started` once text has arrived (the request is decoding)."""
    body = {"model": MODEL_NAME, "prompt": FIRST, "max_tokens": max_tokens, "stream": True}
    text = ""
    async with http.stream("POST", "/v1/completions", json={**body, **sampling}) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                text += json.loads(line[6:])["choices"][0]["text"]
                if text:
                    started.set()
    return text


async def join_mid_stream(server: ServerProcess, **sampling: object) -> None:
    """Check both texts of a stream joined mid-way equal their solo runs."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        first_alone = await complete(http, FIRST, 300, **sampling)
        second_alone = await complete(http, SECOND, 30, **sampling)
        started = asyncio.Event()
        first = asyncio.create_task(stream_until_done(http, started, 300, **sampling))
        await started.wait()
        second = await complete(http, SECOND, 30, **sampling)
        # The first request was still decoding: the second really joined it.
        assert not first.done()
        assert await first == first_alone
    assert second == second_alone


async def test_it_keeps_greedy_texts_when_a_second_request_joins_a_solo_stream(
    lone_server: ServerProcess,
) -> None:
    await join_mid_stream(lone_server, temperature=0)


async def test_it_keeps_a_seeded_text_when_its_stream_moves_into_the_batch(
    lone_server: ServerProcess,
) -> None:
    await join_mid_stream(lone_server, temperature=1.0, seed=11)


def test_it_finishes_the_other_request_when_a_batched_stream_disconnects(
    lone_server: ServerProcess,
) -> None:
    with lone_server.client() as http:
        payload = {"model": MODEL_NAME, "prompt": SECOND, "max_tokens": 60, "temperature": 0}
        second_alone = http.post("/v1/completions", json=payload).json()["choices"][0]["text"]
        long = {"model": MODEL_NAME, "prompt": FIRST, "max_tokens": 1900, "stream": True}
        with http.stream("POST", "/v1/completions", json={**long, "temperature": 0}) as response:
            # Keep the iterator referenced: a dropped one closes the connection.
            lines = response.iter_lines()
            next(line for line in lines if line.startswith("data: {"))
            with lone_server.client() as other:
                second = other.post("/v1/completions", json=payload).json()["choices"][0]["text"]
        # The first client has left mid-stream: its batch slot is freed within a step.
        deadline = time.monotonic() + 3
        while http.get("/health").json()["active_requests"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert http.get("/health").json()["active_requests"] == 0
    assert second == second_alone


def prompt_eval_ms(http: httpx.Client, n: int) -> float:
    """Queueing plus prefill of one short request, as the server measures it."""
    body = {
        "model": MODEL_NAME,
        "prompt": f"#{n} {SECOND}",
        "stream": False,
        "options": {"num_predict": 2, "temperature": 0},
    }
    return float(http.post("/api/generate", json=body).json()["prompt_eval_duration"]) / 1e6


def test_a_request_joining_a_running_stream_starts_without_waiting_for_it(
    lone_server: ServerProcess,
) -> None:
    with lone_server.client() as http:
        # Fastest of five: noise from other processes only ever adds time.
        idle = min(prompt_eval_ms(http, n) for n in range(5))
        long = {"model": MODEL_NAME, "prompt": FIRST, "max_tokens": 1900, "stream": True}
        with http.stream("POST", "/v1/completions", json={**long, "temperature": 0}) as response:
            # Keep the iterator referenced: a dropped one closes the connection.
            lines = response.iter_lines()
            next(line for line in lines if line.startswith("data: {"))
            with lone_server.client() as other:
                joined = min(prompt_eval_ms(other, n) for n in range(5, 10))
                still_running = other.get("/health").json()["active_requests"] == 1
    assert still_running  # the 1,900-token stream had not ended: the newcomers joined it
    # A newcomer joins at the next step boundary (bench/mlx_bench.py measures how soon); the
    # bound is generous on purpose: it only proves the newcomer neither waited for the
    # running stream to end nor for a polling interval (mlx_lm.server admits every 0.5 s).
    assert joined <= idle + 100, (joined, idle)
