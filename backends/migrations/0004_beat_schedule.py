"""Create the default beat schedule (editable in the admin) and the permissions to edit it."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

# name -> (task, every seconds or crontab (minute, hour), expire_seconds, description)
SCHEDULE = {
    "Probe backends": (
        "backends.probe_all", 30, 25,
        "Probe every enabled entry; a round not started within 25 s is dropped, not piled up.",
    ),
    "Roll up request samples": (
        "backends.rollup", 60, 55,
        "Recompute the hourly roll-ups touched by newly received samples.",
    ),
    "Prune old samples and probes": (
        "backends.prune", ("30", "3"), 3600,
        "Delete samples and probe records older than ATHENA_SAMPLE_RETENTION_DAYS.",
    ),
}

VIEW = ["view_healthcheck", "view_hourlyrollup"]
BEAT_EDIT = [
    "view_periodictask", "change_periodictask",
    "view_intervalschedule", "add_intervalschedule", "change_intervalschedule",
    "view_crontabschedule", "add_crontabschedule", "change_crontabschedule",
]


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, (task, when, expire_seconds, description) in SCHEDULE.items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue  # the operator's edits win
        schedule = {}
        if isinstance(when, int):
            schedule["interval"], _ = IntervalSchedule.objects.get_or_create(
                every=when, period="seconds"
            )
        else:
            schedule["crontab"], _ = CrontabSchedule.objects.get_or_create(
                minute=when[0], hour=when[1], day_of_week="*", day_of_month="*",
                month_of_year="*", timezone="UTC",
            )
        PeriodicTask.objects.create(
            name=name, task=task, expire_seconds=expire_seconds, description=description,
            **schedule,
        )


def grant_permissions(apps, schema_editor):
    for label in ("backends", "django_celery_beat"):
        config = apps.get_app_config(label)
        original = getattr(config, "models_module", None)
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
        config.models_module = original
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name__in=["LLM viewers", "LLM operators"]):
        codenames = VIEW + (BEAT_EDIT if group.name == "LLM operators" else [])
        group.permissions.add(*Permission.objects.filter(codename__in=codenames))


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=SCHEDULE).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("backends", "0003_health_rollups"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [
        migrations.RunPython(create_schedule, remove_schedule),
        migrations.RunPython(grant_permissions, migrations.RunPython.noop),
    ]
