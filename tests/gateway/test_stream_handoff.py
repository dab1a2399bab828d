"""A stream's producer-to-writer queue keeps order and holds a producer that runs ahead."""

from __future__ import annotations

import asyncio

from athena_admin.gateway.answer import _Handoff


async def test_items_arrive_in_order_and_a_full_queue_holds_the_producer():
    queue = _Handoff(2)
    produced: list[int] = []

    async def produce() -> None:
        for i in range(5):
            await queue.put(i)
            produced.append(i)

    producer = asyncio.ensure_future(produce())
    await asyncio.sleep(0)
    assert produced == [0, 1]  # the third put waits for room: backpressure on the upstream
    received = [await queue.get() for _ in range(5)]
    await producer
    assert received == [0, 1, 2, 3, 4] and queue.empty()


async def test_a_waiting_writer_wakes_when_an_item_comes():
    queue = _Handoff(4)
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    await queue.put("chunk")
    assert await asyncio.wait_for(getter, 1) == "chunk"
