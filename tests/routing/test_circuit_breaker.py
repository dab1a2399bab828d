"""The passive circuit breaker: opens on consecutive hard failures, half-opens after a cool-down."""

import asyncio
import contextlib

from routing._breaker import BreakerBoard
from tests.routing.conftest import target


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_it_opens_after_the_threshold_and_lets_one_trial_through_after_the_cooldown():
    clock = Clock()
    breaker = BreakerBoard(threshold=3, base_cooldown=2.0, max_cooldown=60.0, clock=clock).get(
        ("k", "u", "m")
    )
    for _ in range(2):
        breaker.record_failure()
        assert breaker.allow()
    breaker.record_failure()
    assert not breaker.allow()
    clock.now += 2.0
    assert breaker.allow()  # the half-open trial
    assert not breaker.allow()  # only one at a time
    breaker.record_failure()  # trial failed: cool-down doubles
    clock.now += 2.0
    assert not breaker.allow()
    clock.now += 2.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.allow() and breaker.allow()


def test_the_cooldown_is_capped():
    clock = Clock()
    breaker = BreakerBoard(threshold=1, base_cooldown=1.0, max_cooldown=5.0, clock=clock).get(
        ("k", "u", "m")
    )
    for _ in range(30):
        breaker.record_failure()
    clock.now += 5.0
    assert breaker.allow()


async def test_an_open_circuit_skips_the_target_without_calling_it(
    make_router, admin_state, openai_url, ollama_url, openai_behavior
):
    admin_state.set_route("m", target("mlx", openai_url, "a"), target("ollama", ollama_url, "b"))
    openai_behavior.status = 500
    router = make_router(breaker_threshold=2, breaker_cooldown=0.2)
    for _ in range(4):
        assert (await router.generate(model="m", prompt="hi"))["backend"] == "ollama"
    assert len(openai_behavior.requests) == 2  # then skipped
    openai_behavior.status = 200
    await asyncio.sleep(0.25)
    assert (await router.generate(model="m", prompt="hi"))[
        "backend"
    ] == "mlx"  # the trial closes it
    assert (await router.generate(model="m", prompt="hi"))["backend"] == "mlx"


async def test_4xx_and_slow_answers_do_not_open_the_circuit(
    make_router, admin_state, openai_url, ollama_url, openai_behavior
):
    admin_state.set_route(
        "m", target("mlx", openai_url, "a", timeout_seconds=2), target("ollama", ollama_url, "b")
    )
    router = make_router(breaker_threshold=1)
    openai_behavior.status = 400
    for _ in range(3):
        with contextlib.suppress(Exception):
            await router.generate(model="m", prompt="hi")
    openai_behavior.status = 200
    openai_behavior.delay = 0.3
    assert (await router.generate(model="m", prompt="hi"))["backend"] == "mlx"
    assert (await router.generate(model="m", prompt="hi"))["backend"] == "mlx"


async def test_the_last_remaining_target_is_never_skipped(
    make_router, admin_state, ollama_url, ollama_behavior
):
    admin_state.set_route("m", target("ollama", ollama_url, "a"))
    router = make_router(breaker_threshold=1, breaker_cooldown=60)
    ollama_behavior.status = 503
    for _ in range(3):
        with contextlib.suppress(Exception):
            await router.generate(model="m", prompt="hi")
    ollama_behavior.status = 200
    assert (await router.generate(model="m", prompt="hi"))["response"] == "Hello, world!"
    assert len(ollama_behavior.requests) == 4


async def test_a_cold_start_does_not_open_the_circuit(
    make_router, admin_state, openai_url, ollama_url, ollama_behavior
):
    admin_state.set_route("m", target("ollama", ollama_url, "a"), target("mlx", openai_url, "b"))
    seen: list[dict] = []
    router = make_router(breaker_threshold=1, breaker_cooldown=60, on_sample=seen.append)
    ollama_behavior.load_ms = 300.0  # a slow first answer: the model was loading
    assert (await router.generate(model="m", prompt="hi"))["backend"] == "ollama"
    ollama_behavior.load_ms = None
    assert (await router.generate(model="m", prompt="hi"))["backend"] == "ollama"
    assert [(s["ok"], s["error_kind"]) for s in seen] == [(True, None), (True, None)]
    assert seen[0]["load_ms"] == 300.0 and seen[1]["load_ms"] < 300.0
