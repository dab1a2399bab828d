"""Backend comparisons: send one standard prompt set to every target that can serve a model.

Start (`comparison_start`) validates, records the run and its targets, and enqueues the
Celery task once the transaction commits. The task calls `comparison_run`, which times each
call (backends/comparison_calls.py) and stores it. `comparison_cancel` is a conditional
UPDATE of the status; the running task reads the status before every call.

It never disturbs production: one run at a time on the site and one call at a time in a run
(so at most one per target, and two targets on one machine never compete for its GPU),
every run has a time limit it stops at, and nothing is reported as a request sample, so the
dashboards are untouched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from backends.comparison_calls import CallSession, CallTiming
from backends.comparison_prompts import CASES, PROMPT_SET, PromptCase, prompt_request
from backends.comparison_selectors import headline, run_summary, targets_to_compare
from backends.models import (
    ACTIVE_COMPARISON,
    ComparisonCall,
    ComparisonLock,
    ComparisonRun,
    ComparisonStatus,
    ComparisonTarget,
    LLMBackend,
)
from routing import Target

__all__ = [
    "BUSY",
    "CASES",
    "PROMPT_SET",
    "ComparisonInProgress",
    "comparison_cancel",
    "comparison_run",
    "comparison_start",
    "comparisons_expire_stale",
]

logger = logging.getLogger(__name__)

MIN_SECONDS = 10
# How long past its time limit a running run may go unfinished before it counts as lost (its
# worker died): the task's hard time limit plus a margin.
_LOST_AFTER = timedelta(seconds=120)


class ComparisonInProgress(Exception):
    """The model already has a queued or running comparison."""

    def __init__(self, model_name: str, run_id: int | None) -> None:
        self.model_name, self.run_id = model_name, run_id
        which = f" (run {run_id})" if run_id else ""
        super().__init__(f"A comparison of model '{model_name}' is already in progress{which}.")


# --- start ---


def _check_range(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError({field: f"Must be a whole number from {low} to {high}."})
    return value


def comparison_start(
    *,
    model_name: str,
    repetitions: int | None = None,
    max_seconds: int | None = None,
    user: Any = None,
) -> ComparisonRun:
    """Record a run of every target that can serve the model; enqueue it on commit."""
    reps = settings.ATHENA_COMPARISON_REPETITIONS if repetitions is None else repetitions
    _check_range("repetitions", reps, 1, settings.ATHENA_COMPARISON_MAX_REPETITIONS)
    limit = settings.ATHENA_COMPARISON_MAX_SECONDS
    seconds = _check_range(
        "max_seconds", limit if max_seconds is None else max_seconds, MIN_SECONDS, limit
    )
    entry = LLMBackend.objects.filter(model_name=model_name).first()
    if entry is None:
        raise ValidationError({"model_name": f"No backend configured for model '{model_name}'."})
    targets = targets_to_compare(entry)
    comparisons_expire_stale(model_name=model_name)
    try:
        with transaction.atomic():
            run = ComparisonRun.objects.create(
                model_name=model_name,
                entry=entry,
                repetitions=reps,
                max_seconds=seconds,
                created_by=user if getattr(user, "pk", None) else None,
            )
            ComparisonTarget.objects.bulk_create(
                ComparisonTarget(
                    run=run,
                    position=i,
                    entry_id=t["entry_id"],
                    model_name=t["model_name"],
                    backend_type=t["backend_type"],
                    endpoint_url=t["endpoint_url"],
                    upstream_model=t["upstream_model"],
                    in_chain=t["in_chain"],
                )
                for i, t in enumerate(targets, start=1)
            )
    except IntegrityError:
        # The partial unique index: another run of this model is queued or running.
        active = ComparisonRun.objects.filter(model_name=model_name, status__in=ACTIVE_COMPARISON)
        raise ComparisonInProgress(
            model_name, active.values_list("pk", flat=True).first()
        ) from None
    transaction.on_commit(lambda: _enqueue(run))
    return run


def _enqueue(run: ComparisonRun) -> None:
    from backends.tasks import compare_backends

    try:
        compare_backends.apply_async(
            (run.pk,),
            # The run stops itself at max_seconds; these only catch a run that cannot.
            soft_time_limit=run.max_seconds + 30,
            time_limit=run.max_seconds + 60,
            # A run no worker took within its own time limit is stale: drop it.
            expires=run.max_seconds,
        )
    except Exception:  # the broker is unreachable: say so on the run instead of hanging
        logger.exception("comparison %s: could not enqueue", run.pk)
        _end(
            run.pk,
            ComparisonStatus.FAILED,
            "Could not reach the task queue.",
            only=[ComparisonStatus.QUEUED],
        )


def comparisons_expire_stale(*, model_name: str | None = None) -> int:
    """Mark runs that no worker took, or whose worker died, as failed."""
    now = timezone.now()
    stale = ComparisonRun.objects.filter(status__in=ACTIVE_COMPARISON)
    if model_name is not None:
        stale = stale.filter(model_name=model_name)
    count = 0
    for run in stale:
        queued_too_long = run.status == ComparisonStatus.QUEUED and (
            run.created_at + timedelta(seconds=run.max_seconds) < now
        )
        lost = run.started_at is not None and (
            run.started_at + timedelta(seconds=run.max_seconds) + _LOST_AFTER < now
        )
        if queued_too_long or lost:
            why = "No worker took the run in time." if queued_too_long else "The worker stopped."
            count += _end(run.pk, ComparisonStatus.FAILED, why, only=[run.status])
    return count


# --- cancel ---


def comparison_cancel(*, run_id: int, user: Any = None) -> bool:
    """Cancel a queued or running run; False when it had already ended."""
    who = f" by {user.get_username()}" if getattr(user, "pk", None) else ""
    return bool(
        _end(run_id, ComparisonStatus.CANCELLED, f"Cancelled{who}.", only=ACTIVE_COMPARISON)
    )


def _end(run_id: int, status: str, detail: str, *, only: Any) -> int:
    """Move a run to a final status, only from one of `only` (a conditional UPDATE)."""
    return ComparisonRun.objects.filter(pk=run_id, status__in=list(only)).update(
        status=status, detail=detail[:500], finished_at=timezone.now()
    )


# --- run ---


@dataclass(frozen=True, slots=True)
class _Step:
    target: ComparisonTarget
    case: PromptCase
    repetition: int  # 0: the warm-up


def _plan(targets: list[ComparisonTarget], repetitions: int) -> Iterator[_Step]:
    """A warm-up per target, then each repetition of each case to every target in turn.

    Why interleaved: a backend that drifts (thermal throttling, another tenant) affects every
    target's figures alike instead of one target's. Why a warm-up: a first call may load the
    model (seconds on Ollama); that is a cold start, not the target's speed.
    """
    for target in targets:
        yield _Step(target, PROMPT_SET[0], 0)
    for repetition in range(1, repetitions + 1):
        for case in PROMPT_SET:
            for target in targets:
                yield _Step(target, case, repetition)


def _tag(run: ComparisonRun, step: _Step) -> str:
    case = PROMPT_SET.index(step.case)
    return (
        f"[run {run.pk}, repetition {step.repetition}, case {case}, target {step.target.position}]"
    )


def _routing_target(target: ComparisonTarget, *, timeout: float) -> Target:
    return Target(
        backend_type=target.backend_type,
        endpoint_url=target.endpoint_url,
        upstream_model=target.upstream_model,
        model_name=target.model_name,
        entry_id=target.entry_id,
        timeout_seconds=timeout,
    )


def _save_call(step: _Step, started: Any, timing: CallTiming) -> None:
    ComparisonCall.objects.create(
        target=step.target,
        case=step.case.name,
        repetition=step.repetition,
        started_at=started,
        ok=timing.ok,
        error_kind=timing.error_kind,
        error=timing.error[:200],
        status_code=timing.status_code,
        latency_ms=timing.latency_ms,
        ttft_ms=timing.ttft_ms,
        decode_tokens_per_sec=timing.decode_tokens_per_sec,
        prompt_tokens=timing.prompt_tokens,
        completion_tokens=timing.completion_tokens,
    )


def _still_running(run_id: int) -> bool:
    return ComparisonRun.objects.filter(pk=run_id, status=ComparisonStatus.RUNNING).exists()


BUSY = "busy"  # comparison_run's answer while another run holds the comparison slot
_SLOT = "comparisons"


def _claim_slot(run: ComparisonRun) -> bool:
    """Claim the site's one comparison slot for the run; False while another run holds it.

    Why one run at a time on the whole site: a run then occupies at most one worker process
    (the probes and roll-ups keep the others), and two runs never meet on one server or its
    GPU, whichever models they compare. A slot whose run has ended (its worker died, and the
    run was marked failed) is free again.
    """
    comparisons_expire_stale()
    with transaction.atomic():
        ComparisonLock.objects.filter(slot=_SLOT).exclude(
            run__status__in=ACTIVE_COMPARISON
        ).delete()
        try:
            with transaction.atomic():
                ComparisonLock.objects.create(slot=_SLOT, run=run)
        except IntegrityError:
            return False
    return True


def _status_of(run_id: int) -> str:
    return ComparisonRun.objects.filter(pk=run_id).values_list("status", flat=True).first() or ""


def comparison_run(*, run_id: int) -> str:
    """Run a queued comparison to its end, its time limit or its cancellation; return its status.

    Returns BUSY, sending nothing, while another run holds the comparison slot (the task
    tries again a little later). Safe to call twice: only the call that moves the run from
    queued to running does anything.
    """
    run = ComparisonRun.objects.filter(pk=run_id, status=ComparisonStatus.QUEUED).first()
    if run is None:
        return _status_of(run_id)
    if not _claim_slot(run):
        if run.created_at + timedelta(seconds=run.max_seconds) < timezone.now():
            why = "Another comparison ran for longer than this run could wait."
            _end(run_id, ComparisonStatus.FAILED, why, only=[ComparisonStatus.QUEUED])
            return _status_of(run_id)
        return BUSY
    try:
        started = ComparisonRun.objects.filter(pk=run_id, status=ComparisonStatus.QUEUED).update(
            status=ComparisonStatus.RUNNING, started_at=timezone.now()
        )
        if not started:  # cancelled meanwhile
            return _status_of(run_id)
        return _run_claimed(ComparisonRun.objects.get(pk=run_id))
    finally:
        ComparisonLock.objects.filter(run_id=run_id).delete()


def _run_claimed(run: ComparisonRun) -> str:
    run_id = run.pk
    try:
        status, detail = _measure(run)
    except BaseException as exc:  # a bug, or Celery's soft time limit: say so on the run
        _end(
            run_id,
            ComparisonStatus.FAILED,
            f"Stopped: {type(exc).__name__}.",
            only=[ComparisonStatus.RUNNING],
        )
        raise
    # A cancel that landed during the last call wins: only a running run is ended here.
    _end(run_id, status, detail, only=[ComparisonStatus.RUNNING])
    run.refresh_from_db()
    ComparisonRun.objects.filter(pk=run_id).update(headline=headline(run_summary(run, CASES))[:500])
    return run.status


def _measure(run: ComparisonRun) -> tuple[str, str]:
    """Send the plan's calls one after another; return the final (status, detail)."""
    deadline = time.monotonic() + run.max_seconds
    targets = list(run.targets.select_related("entry").order_by("position"))
    steps = list(_plan(targets, run.repetitions))
    done = 0
    with asyncio.Runner() as loop:
        # One event loop and one connection pool for the whole run; the database is only
        # touched between calls, never while the loop runs (Django's ORM is synchronous).
        session = CallSession(settings.ATHENA_ALLOWED_BACKEND_NETWORKS)
        try:
            for step in steps:
                if step.target.unreachable:
                    continue
                if not _still_running(run.pk):
                    return ComparisonStatus.CANCELLED, "Cancelled."
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # Between bytes a call waits the entry's own timeout (a stall is the target's
                # error); the run's remaining time bounds the whole call (a cut is not).
                entry_timeout = step.target.entry.timeout_seconds if step.target.entry else 60
                target = _routing_target(step.target, timeout=entry_timeout)
                when = timezone.now()
                request = prompt_request(step.case, model=run.model_name, tag=_tag(run, step))
                timing = loop.run(session.time_call(target, request, limit=remaining))
                if timing is None:
                    break  # the time limit cut the call: not a measurement, not stored
                _save_call(step, when, timing)
                done += 1
                if step.repetition == 0 and timing.error_kind in ("connect", "timeout"):
                    # A target that cannot be reached is reported once, not timed N more times.
                    step.target.unreachable = timing.error
                    step.target.save(update_fields=["unreachable"])
        finally:
            loop.run(session.aclose())
    planned = sum(1 for s in steps if s.repetition == 0 or not s.target.unreachable)
    if done < planned:
        return ComparisonStatus.TIMED_OUT, (
            f"Stopped at the {run.max_seconds} s limit after {done} of {planned} calls."
        )
    return ComparisonStatus.DONE, f"{done} calls."
