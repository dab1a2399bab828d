"""The process-wide router works from any event loop and any thread, and from sync code.

Against the real admin (pytest-django's live_server): each loop's samples reach it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from django.db import connection

from athena_admin.celery import app
from routing import generate_sync, get_llm_router
from tests.backends.celery_workers import REDIS_URL, unique_queue, use_broker, wait_until
from tests.upstreams import Behavior, ollama_app, serve_in_thread

pytestmark = pytest.mark.django_db(transaction=True)

ANSWER = "Hello, world!"


@pytest.fixture
def upstream() -> Iterator[Behavior]:
    behavior = Behavior()
    with serve_in_thread(ollama_app(behavior)) as server:
        behavior.url = server.url  # type: ignore[attr-defined]
        yield behavior


@pytest.fixture
def process_router(live_server, monkeypatch, upstream) -> None:
    """get_llm_router() made afresh from the environment, pointed at the real admin."""
    from backends import services
    from routing import _router

    _, key = services.service_key_create(name="event loop tests")
    services.backend_create(
        fields={
            "model_name": "phi3:mini",
            "backend_type": "ollama",
            "endpoint_url": upstream.url,
            "upstream_model": "phi3:mini",
        }
    )
    monkeypatch.setenv("ADMIN_API_URL", live_server.url)
    monkeypatch.setenv("ATHENA_SERVICE_KEY", key)
    monkeypatch.delenv("ATHENA_ROUTES_FILE", raising=False)
    monkeypatch.setattr(_router, "_router", None)


def samples_stored() -> int:
    from backends.models import RequestSample

    return RequestSample.objects.filter(ok=True).count()


def test_sequential_asyncio_runs_each_get_an_answer_and_ship_their_samples(process_router):
    # The review's case: the router is made outside any loop, then used by three loops.
    for n in range(1, 4):
        result = asyncio.run(get_llm_router().generate("phi3:mini", "hi"))
        assert result["response"] == ANSWER
        # Sent when that loop shut down, not left behind with it.
        assert samples_stored() == n


def test_threads_with_loops_of_their_own_share_the_router(process_router):
    router = get_llm_router()
    answers: list[str] = []
    errors: list[BaseException] = []

    def sync_caller() -> None:
        try:
            for _ in range(3):
                answers.append(generate_sync("phi3:mini", "hi")["response"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sync_caller) for _ in range(3)]

    async def main_loop() -> None:
        for thread in threads:
            thread.start()
        for _ in range(3):  # meanwhile, the main thread's own loop uses the same router
            answers.append((await router.generate("phi3:mini", "hi"))["response"])
        for thread in threads:
            await asyncio.to_thread(thread.join, 30)

    asyncio.run(main_loop())
    assert errors == []
    assert answers == [ANSWER] * 12
    assert samples_stored() == 12
    assert not router.closed and router._sessions == {}  # every loop's session closed with it


def test_generate_sync_inside_a_running_loop_says_to_await_instead(process_router):
    async def inside() -> None:
        with pytest.raises(RuntimeError, match=r"await get_llm_router\(\)\.generate"):
            generate_sync("phi3:mini", "hi")

    asyncio.run(inside())


# -- a real Celery worker (in a thread, on the real Redis) ------------------------------------

TASK_ANSWERS: list[str] = []


@app.task(name="tests.routing.generate_in_a_task")
def generate_in_a_task(model: str, prompt: str) -> None:
    # A sync task, as the plan's callers are: generate_sync runs the call on its own loop.
    TASK_ANSWERS.append(generate_sync(model, prompt)["response"])


@pytest.fixture
def worker() -> Iterator[None]:
    name = unique_queue()
    use_broker(REDIS_URL)
    saved_queue = app.conf.task_default_queue
    app.conf.task_default_queue = name
    # Close each task's database connection, so the test database can be dropped after.
    saved_age = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = 0
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, queues=[name]):
            yield
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = saved_age
        app.conf.task_default_queue = saved_queue
        redis.Redis.from_url(REDIS_URL).delete(name)


def test_celery_tasks_call_the_router_one_after_another(process_router, worker, upstream):
    TASK_ANSWERS.clear()
    for _ in range(3):
        generate_in_a_task.delay("phi3:mini", "hi")
    wait_until(lambda: len(TASK_ANSWERS) == 3)
    assert TASK_ANSWERS == [ANSWER] * 3
    assert len(upstream.requests) == 3
    wait_until(lambda: samples_stored() == 3, timeout=10)
