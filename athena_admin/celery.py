"""The Celery app: Redis broker (or the filesystem transport in development), one beat.

celery -A athena_admin worker -l info
celery -A athena_admin beat -l info     # exactly one, schedule edited in the admin
"""

import copy
import logging.config
import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "athena_admin.settings")

app = Celery("athena_admin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _make_filesystem_queue(sender: Celery, **kwargs: object) -> None:
    # kombu's filesystem transport fails on folders that do not exist yet.
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder"):
        if key in options:
            Path(str(options[key])).mkdir(parents=True, exist_ok=True)


@setup_logging.connect
def _athena_logging(**kwargs: Any) -> None:
    # A receiver here stops Celery from installing its own handlers: worker and beat log
    # through settings.LOGGING (routing/logs.py), in the same format as the admin.
    from django.conf import settings

    config = copy.deepcopy(settings.LOGGING)
    formatter = config.get("formatters", {}).get("athena")
    if formatter is not None and not os.environ.get("ATHENA_SERVICE_NAME"):
        formatter["service"] = "celery"
    logging.config.dictConfig(config)


@task_prerun.connect
def _task_request_id(task_id: str | None = None, **kwargs: Any) -> None:
    # In a worker the task is the unit of work: its id is the request id of its log lines.
    from routing.logs import set_request_id

    set_request_id(task_id)


@task_postrun.connect
def _task_request_id_done(**kwargs: Any) -> None:
    from routing.logs import set_request_id

    set_request_id(None)
