"""The beat schedule: defaults exist, editable rows, tasks that expire and ack late."""

import importlib

from django.apps import apps
from django_celery_beat.models import PeriodicTask

from athena_admin.celery import app
from backends import tasks


def _schedule() -> dict[str, PeriodicTask]:
    importlib.import_module("backends.migrations.0004_beat_schedule").create_schedule(apps, None)
    return {t.task: t for t in PeriodicTask.objects.filter(task__startswith="backends.")}


def test_the_default_schedule_probes_rolls_up_and_prunes(db):
    schedule = _schedule()
    assert set(schedule) == {"backends.probe_all", "backends.rollup", "backends.prune"}
    probe, rollup, prune = (
        schedule[n] for n in ("backends.probe_all", "backends.rollup", "backends.prune")
    )
    assert (probe.interval.every, probe.interval.period, probe.expire_seconds) == (
        30,
        "seconds",
        25,
    )
    assert (rollup.interval.every, rollup.interval.period) == (60, "seconds")
    assert (prune.crontab.minute, prune.crontab.hour) == ("30", "3")


def test_an_operators_edit_survives_re_creating_the_defaults(db):
    PeriodicTask.objects.filter(task="backends.probe_all").update(enabled=False)
    assert _schedule()["backends.probe_all"].enabled is False


def test_every_scheduled_task_is_registered_with_the_app(db):
    app.loader.import_default_modules()
    for name in _schedule():
        assert name in app.tasks


def test_tasks_ack_late_have_time_limits_and_probes_expire():
    for task in (tasks.probe_all, tasks.probe_entries, tasks.rollup, tasks.prune):
        assert task.acks_late and task.reject_on_worker_lost
        assert task.time_limit and task.soft_time_limit and task.soft_time_limit < task.time_limit
    assert tasks.probe_all.expires == 25
    assert app.conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"
