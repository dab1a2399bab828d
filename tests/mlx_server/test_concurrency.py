"""Eight concurrent streams all complete correctly while /health stays responsive."""

import asyncio
import json
import time

import httpx

from .conftest import MODEL_NAME, ServerProcess

PROMPTS = [f"Story number {i}: once upon a time" for i in range(8)]


async def test_it_completes_eight_concurrent_streams_while_health_answers(
    server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:

        async def solo(prompt: str) -> str:
            body = (
                await http.post(
                    "/v1/completions",
                    json={
                        "model": MODEL_NAME,
                        "prompt": prompt,
                        "max_tokens": 150,
                        "temperature": 0,
                    },
                )
            ).json()
            return str(body["choices"][0]["text"])

        expected = [await solo(p) for p in PROMPTS]

        async def stream(prompt: str) -> tuple[str, str | None]:
            text, finish = "", None
            payload = {
                "model": MODEL_NAME,
                "prompt": prompt,
                "max_tokens": 150,
                "temperature": 0,
                "stream": True,
            }
            async with http.stream("POST", "/v1/completions", json=payload) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        choice = json.loads(line[6:])["choices"][0]
                        text += choice["text"]
                        finish = choice["finish_reason"] or finish
            return text, finish

        health_latencies: list[float] = []
        saw_batch: list[int] = []

        async def watch_health(done: asyncio.Event) -> None:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as probe:
                while not done.is_set():
                    tic = time.perf_counter()
                    body = (await probe.get("/health")).json()
                    health_latencies.append(time.perf_counter() - tic)
                    saw_batch.append(body["active_requests"])
                    await asyncio.sleep(0.02)

        done = asyncio.Event()
        watcher = asyncio.create_task(watch_health(done))
        results = await asyncio.gather(*(stream(p) for p in PROMPTS))
        done.set()
        await watcher

    assert [text for text, _ in results] == expected
    assert all(finish == "length" for _, finish in results)
    assert health_latencies and max(health_latencies) < 1.0
    # The streams really overlapped: /health saw several in the batch at once.
    assert max(saw_batch) >= 4
