"""Celery workers log in the shared format, with the task id as the request id."""

from __future__ import annotations

import logging

from athena_admin.celery import _athena_logging, _task_request_id, _task_request_id_done
from routing.logs import JsonFormatter, RedactingFilter, get_request_id, logging_config


def test_the_worker_logs_json_lines_tagged_celery(settings, monkeypatch):
    monkeypatch.delenv("ATHENA_SERVICE_NAME", raising=False)
    settings.LOGGING = logging_config(service="admin", fmt="json")
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        _athena_logging()
        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonFormatter)
        assert handler.formatter.service == "celery"
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_a_task_s_id_is_the_request_id_of_its_lines():
    _task_request_id(task_id="round-42")
    try:
        assert get_request_id() == "round-42"
    finally:
        _task_request_id_done()
    assert get_request_id() is None
