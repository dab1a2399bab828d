"""The comparison service against real targets: the MLX server, a slowed upstream, a dead port."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from backends.comparison_selectors import headline, run_summary
from backends.comparisons import (
    BUSY,
    CASES,
    PROMPT_SET,
    ComparisonInProgress,
    comparison_run,
    comparison_start,
    comparisons_expire_stale,
)
from backends.models import ComparisonCall, ComparisonRun, ComparisonStatus
from tests.backends.celery_workers import wait_until
from tests.backends.comparison_targets import SLOW_CHUNK, SLOW_DELAY, calls_of, mlx_counts

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("comparison_queue")]


def test_the_faster_target_is_named_and_its_figures_match_what_the_targets_saw(
    compared, mlx, slow_upstream
):
    fast, slow = compared["fast"], compared["slow"]
    before = mlx_counts(mlx)
    run = comparison_start(model_name="tiny", repetitions=2)

    assert comparison_run(run_id=run.pk) == ComparisonStatus.DONE

    run.refresh_from_db()
    summary = run_summary(run, CASES)
    assert summary.fastest is not None
    assert summary.fastest.target.endpoint_url == fast.endpoint_url
    runner_up, ratio = summary.ratios[0]
    assert runner_up.target.endpoint_url == slow.endpoint_url and ratio > 1
    assert run.headline == headline(summary)
    assert run.headline.startswith(f"Fastest: mlx {fast.endpoint_url}")

    # Each target got the warm-up and every case twice; the MLX server counted the same calls
    # and the same tokens in its own /metrics.
    per_target = 1 + 2 * len(PROMPT_SET)
    fast_calls, slow_calls = calls_of(run, fast.endpoint_url), calls_of(run, slow.endpoint_url)
    assert len(fast_calls) == len(slow_calls) == per_target
    assert all(c.ok for c in fast_calls + slow_calls)
    after = mlx_counts(mlx)
    assert after["requests"] - before["requests"] == per_target
    assert after["tokens"] - before["tokens"] == sum(c.completion_tokens for c in fast_calls)
    # Our end-to-end time holds the server's own and a little more (the network, the client).
    server_seconds = after["seconds"] - before["seconds"]
    our_seconds = sum(c.latency_ms for c in fast_calls) / 1000
    assert server_seconds * 0.98 <= our_seconds <= server_seconds + 0.5 * per_target
    # The slowed upstream recorded as many requests, and its figures show its own pacing:
    # TTFT at least its delay plus one chunk; decode (the median: one late chunk on a busy
    # machine shortens one call's span) about one token per chunk delay, never much more.
    assert len(slow_upstream.requests) == per_target
    assert all(r["stream"] is True for r in slow_upstream.requests)
    slow_summary = next(s for s in summary.targets if s.target.endpoint_url == slow.endpoint_url)
    assert slow_summary.ttft_ms.low is not None
    assert slow_summary.ttft_ms.low >= (SLOW_DELAY + SLOW_CHUNK) * 1000 * 0.95
    assert slow_summary.decode_tokens_per_sec.median is not None
    assert slow_summary.decode_tokens_per_sec.median <= (1 / SLOW_CHUNK) * 1.1
    assert slow_summary.ttft_ms.count == slow_summary.latency_ms.count == 2 * len(PROMPT_SET)


def test_a_dead_target_is_reported_unreachable_and_not_timed_again(compared, slow_upstream):
    run = comparison_start(model_name="tiny", repetitions=1)
    comparison_run(run_id=run.pk)

    dead = run.targets.get(endpoint_url=compared["dead"].endpoint_url)
    assert dead.in_chain and dead.unreachable == "cannot connect"
    [warmup] = dead.calls.all()
    assert warmup.repetition == 0 and not warmup.ok and warmup.error_kind == "connect"
    summary = run_summary(run, CASES)
    dead_summary = next(s for s in summary.targets if s.target.pk == dead.pk)
    assert not dead_summary.measured and dead_summary.calls == 0
    assert "cannot connect" not in run.headline  # the dead one is never "fastest"


def test_every_target_that_can_serve_the_model_is_compared_once(compared):
    run = comparison_start(model_name="tiny-slow", repetitions=1)
    targets = list(run.targets.order_by("position"))
    assert [(t.model_name, t.in_chain) for t in targets] == [
        ("tiny-slow", True),
        ("tiny", False),
        ("tiny-dead", False),
    ]


def test_a_run_stops_at_its_time_limit(compared, slow_upstream):
    slow_upstream.delay = 4.0  # every call to the slow target takes 4 s
    run = comparison_start(model_name="tiny-slow", repetitions=20, max_seconds=10)
    started = time.monotonic()

    assert comparison_run(run_id=run.pk) == ComparisonStatus.TIMED_OUT

    elapsed = time.monotonic() - started
    assert elapsed < 20  # bounded: 10 s and the last call cut, not 20 x 4 x 4 s
    run.refresh_from_db()
    assert run.detail.startswith("Stopped at the 10 s limit after ")
    assert run.finished_at is not None


def test_bad_input_names_the_field(compared):
    with pytest.raises(ValidationError) as unknown:
        comparison_start(model_name="no-such-model")
    assert "model_name" in unknown.value.message_dict
    for reps in (0, 21, "3", True):
        with pytest.raises(ValidationError) as bad:
            comparison_start(model_name="tiny", repetitions=reps)  # type: ignore[arg-type]
        assert "repetitions" in bad.value.message_dict
    with pytest.raises(ValidationError) as too_long:
        comparison_start(model_name="tiny", max_seconds=10**6)
    assert "max_seconds" in too_long.value.message_dict


def test_a_second_run_of_the_same_model_is_refused_while_one_is_in_progress(compared):
    first = comparison_start(model_name="tiny")
    with pytest.raises(ComparisonInProgress) as clash:
        comparison_start(model_name="tiny")
    assert clash.value.run_id == first.pk
    comparison_start(model_name="tiny-slow")  # another model is fine
    ComparisonRun.objects.filter(pk=first.pk).update(status=ComparisonStatus.DONE)
    comparison_start(model_name="tiny")  # and so is the same model once the first ended


def test_a_run_no_worker_took_in_time_no_longer_blocks_the_next(compared):
    stale = comparison_start(model_name="tiny", max_seconds=10)
    ComparisonRun.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(seconds=11))  # fmt: skip

    fresh = comparison_start(model_name="tiny")

    stale.refresh_from_db()
    assert stale.status == ComparisonStatus.FAILED
    assert stale.detail == "No worker took the run in time."
    assert fresh.status == ComparisonStatus.QUEUED
    assert comparison_run(run_id=stale.pk) == ComparisonStatus.FAILED  # a late worker: nothing


def test_a_run_whose_worker_died_is_marked_failed(compared):
    lost = comparison_start(model_name="tiny", max_seconds=10)
    long_ago = timezone.now() - timedelta(seconds=10 + 121)
    ComparisonRun.objects.filter(pk=lost.pk).update(status="running", started_at=long_ago)

    assert comparisons_expire_stale() == 1
    lost.refresh_from_db()
    assert (lost.status, lost.detail) == (ComparisonStatus.FAILED, "The worker stopped.")


def test_an_unreachable_task_queue_fails_the_run_instead_of_leaving_it_queued(compared):
    from athena_admin.celery import app
    from tests.backends.celery_workers import REDIS_URL, use_broker
    from tests.upstreams.fixtures import free_port

    use_broker(f"redis://127.0.0.1:{free_port()}/0")
    try:
        run = comparison_start(model_name="tiny")
    finally:
        use_broker(REDIS_URL)
    run.refresh_from_db()
    assert (run.status, run.detail) == (ComparisonStatus.FAILED, "Could not reach the task queue.")
    assert app.conf.broker_url == REDIS_URL


def test_one_run_at_a_time_whatever_the_models(compared, slow_upstream, make_entry, ollama_url):
    slow_upstream.delay = 0.3
    make_entry("elsewhere", endpoint_url=ollama_url, upstream_model="another-model")
    first = comparison_start(model_name="tiny-slow", repetitions=1)
    second = comparison_start(model_name="elsewhere", repetitions=1)  # no server in common

    def run_first() -> None:
        try:
            comparison_run(run_id=first.pk)
        finally:
            connection.close()

    thread = threading.Thread(target=run_first)
    thread.start()
    try:
        wait_until(lambda: ComparisonCall.objects.filter(target__run=first).exists())
        assert comparison_run(run_id=second.pk) == BUSY
        assert not ComparisonCall.objects.filter(target__run=second).exists()
        assert ComparisonRun.objects.get(pk=second.pk).status == ComparisonStatus.QUEUED
    finally:
        thread.join(timeout=60)
    assert ComparisonRun.objects.get(pk=first.pk).status == ComparisonStatus.DONE
    assert comparison_run(run_id=second.pk) == ComparisonStatus.DONE  # free again
