"""A request that outlives the batch it was moved into goes back to decoding alone, losslessly.

The scenario of every test: FIRST streams alone, SECOND joins (FIRST moves into the batch),
SECOND ends, and FIRST, the batch's last request, moves back to the solo path. Its answer
must be the one it gets when nothing moves; `mlx_moves_to_batch` and `mlx_moves_to_solo` in
/metrics show that both moves happened. Each test's server is its own, so nothing else runs.
"""

import asyncio
import time

import httpx

from .conftest import MODEL_NAME, ServerProcess
from .lone_requests import (
    FIRST,
    SECOND,
    complete,
    counter,
    first_streaming,
    stream,
    wait_until_idle,
)


async def outlive_a_batch(server: ServerProcess, **options: object) -> None:
    """Check FIRST's answer is the same when it moves into a batch and back."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        first_alone = await complete(http, FIRST, 300, **options)
        second_alone = await complete(http, SECOND, 30, **options)
        tokens_before = (await http.get("/health")).json()["tokens_generated"]
        started = asyncio.Event()
        first = asyncio.create_task(stream(http, started, 300, **options))
        await started.wait()
        second = await complete(http, SECOND, 30, **options)
        # FIRST was still decoding when SECOND ended: it outlived the batch.
        assert not first.done()
        assert await first == first_alone
        assert second == second_alone
        health = (await http.get("/health")).json()
    assert health["tokens_generated"] - tokens_before == first_alone[1] + second_alone[1]
    assert health["active_requests"] == 0
    assert counter(server.base_url, "mlx_moves_to_batch") == 1
    assert counter(server.base_url, "mlx_moves_to_solo") == 1


async def test_it_keeps_the_greedy_text_of_a_request_that_outlives_its_batch(
    lone_server: ServerProcess,
) -> None:
    await outlive_a_batch(lone_server, temperature=0)


async def test_it_keeps_the_seeded_text_of_a_request_that_outlives_its_batch(
    lone_server: ServerProcess,
) -> None:
    await outlive_a_batch(lone_server, temperature=1.0, seed=5)


async def test_a_stop_sequence_met_after_the_move_back_cuts_the_text_as_alone(
    lone_server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=lone_server.base_url, timeout=60) as http:
        alone, _, _ = await complete(http, FIRST, 300, temperature=0)
        # A piece of the text from well after SECOND's 30 tokens, not found earlier.
        at = next(
            k for k in range(len(alone) * 2 // 3, len(alone)) if alone.find(alone[k : k + 8]) == k
        )
        stop = alone[at : at + 8]
        started = asyncio.Event()
        first = asyncio.create_task(stream(http, started, 300, temperature=0, stop=[stop]))
        await started.wait()
        await complete(http, SECOND, 30, temperature=0)
        assert not first.done()
        text, _, finish = await first
        active = (await http.get("/health")).json()["active_requests"]
    assert (text, finish) == (alone[:at], "stop")
    assert active == 0
    assert counter(lone_server.base_url, "mlx_moves_to_solo") == 1


def test_a_client_that_leaves_after_the_move_back_frees_its_slot(
    lone_server: ServerProcess,
) -> None:
    with lone_server.client() as http:
        payload = {"model": MODEL_NAME, "prompt": SECOND, "max_tokens": 30, "temperature": 0}
        second_alone = http.post("/v1/completions", json=payload).json()["choices"][0]["text"]
        with first_streaming(http), lone_server.client() as other:
            other.post("/v1/completions", json=payload)
            # The engine moves the stream back at its next step; poll, the machine may be busy.
            deadline = time.monotonic() + 3
            while (moved := counter(lone_server.base_url, "mlx_moves_to_solo")) < 1:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            still_running = http.get("/health").json()["active_requests"] == 1
        # The client has left the stream that went back to the solo path: its slot is
        # freed within a step.
        health = wait_until_idle(http)
        # The engine goes on serving, alone again.
        after = http.post("/v1/completions", json=payload).json()["choices"][0]["text"]
    assert (moved, still_running) == (1, True)
    assert (health["active_requests"], health["requests_cancelled"]) == (0, 1)
    assert after == second_alone
    assert counter(lone_server.base_url, "mlx_moves_to_batch") == 1
