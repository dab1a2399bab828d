"""A lone request decodes on the solo path; a second one moves it into the batch losslessly.

Every request here runs on a server of its own, so "alone" really means alone: the first
request of each test finds the engine idle and is decoded outside the batch (solo.py).
"""

import asyncio

import httpx

from .conftest import MODEL_NAME, ServerProcess
from .lone_requests import FIRST, SECOND, complete, first_streaming, stream, wait_until_idle


async def join_mid_stream(server: ServerProcess, **sampling: object) -> None:
    """Check both texts of a stream joined mid-way equal their solo runs."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        first_alone = await complete(http, FIRST, 300, **sampling)
        second_alone = await complete(http, SECOND, 30, **sampling)
        started = asyncio.Event()
        first = asyncio.create_task(stream(http, started, 300, **sampling))
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
        with first_streaming(http), lone_server.client() as other:
            second = other.post("/v1/completions", json=payload).json()["choices"][0]["text"]
        # The first client has left mid-stream: its batch slot is freed within a step.
        assert wait_until_idle(http)["active_requests"] == 0
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
        with first_streaming(http), lone_server.client() as other:
            joined = min(prompt_eval_ms(other, n) for n in range(5, 10))
            still_running = other.get("/health").json()["active_requests"] == 1
    assert still_running  # the 1,900-token stream had not ended: the newcomers joined it
    # A newcomer joins at the next step boundary (bench/mlx_bench.py measures how soon); the
    # bound is generous on purpose: it only proves the newcomer neither waited for the
    # running stream to end nor for a polling interval (mlx_lm.server admits every 0.5 s).
    assert joined <= idle + 100, (joined, idle)
