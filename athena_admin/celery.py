"""The Celery app: Redis broker (or the filesystem transport in development), one beat.

celery -A athena_admin worker -l info
celery -A athena_admin beat -l info     # exactly one, schedule edited in the admin
"""

import os
from pathlib import Path

from celery import Celery

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
