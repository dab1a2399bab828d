"""One log format for every Athena process: JSON lines in production, key=value on a terminal.

Standard library only, so the admin, Celery workers, the router, the gateway and the MLX
server all import it without Django::

    from routing.logs import configure_logging

    configure_logging(service="gateway")          # format from ATHENA_LOG_FORMAT / ATHENA_DEBUG
    LOGGING = logging_config(service="admin")     # the same, as a dictConfig dict (Django)

Every line carries the request id of the request being served (a contextvar: set it with
``request_id_scope()`` or ``set_request_id()``; the router forwards it to backends as
``X-Request-ID``). Every handler this module builds redacts secrets before writing: Athena
service keys (``athk_...``), ``Bearer ...`` credentials and ``sk-...`` style API keys, in the
message, its arguments, extra fields and formatted tracebacks alike.

JSON line fields: ``ts`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``msg``,
``service``, ``request_id`` (when there is one), ``exc`` (a formatted traceback), then any
``extra={...}`` fields given to the logging call.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.config
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import IO, Any

__all__ = [
    "HOPS_HEADER",
    "JsonFormatter",
    "KeyValueFormatter",
    "REQUEST_ID_HEADER",
    "RedactingFilter",
    "clean_request_id",
    "configure_logging",
    "get_hops",
    "get_request_id",
    "log_format",
    "logging_config",
    "make_handler",
    "new_request_id",
    "redact",
    "request_id_scope",
    "reset_hops",
    "reset_request_id",
    "set_hops",
    "set_request_id",
]

REQUEST_ID_HEADER = "X-Request-ID"

_REQUEST_ID: ContextVar[str | None] = ContextVar("athena_request_id", default=None)
# An incoming id is echoed into logs and headers: keep it short and free of anything that
# could forge a log line or a header (no spaces, quotes, newlines, `=`).
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


# How many Athena gateways a request has passed through (X-Athena-Hops, set by the gateway
# per request); the router sends one more upstream, so a gateway reached through its own
# registry sees the count grow and refuses the loop (docs/gateway.md). None: no gateway.
HOPS_HEADER = "X-Athena-Hops"
_HOPS: ContextVar[int | None] = ContextVar("athena_hops", default=None)


def get_hops() -> int | None:
    """Return the gateway hops of the request served in this context, if a gateway set them."""
    return _HOPS.get()


def set_hops(value: int | None) -> Token[int | None]:
    """Make value the current hop count; pass the token to ``reset_hops`` after."""
    return _HOPS.set(value)


def reset_hops(token: Token[int | None]) -> None:
    _HOPS.reset(token)


def get_request_id() -> str | None:
    """Return the id of the request being served in this context, if any."""
    return _REQUEST_ID.get()


def set_request_id(value: str | None) -> Token[str | None]:
    """Make value the current request id; pass the token to ``reset_request_id`` after."""
    return _REQUEST_ID.set(value)


def reset_request_id(token: Token[str | None]) -> None:
    _REQUEST_ID.reset(token)


@contextlib.contextmanager
def request_id_scope(value: str | None = None) -> Iterator[str]:
    """Run a block under a request id (a new one if value is None or unsafe)."""
    rid = clean_request_id(value) or new_request_id()
    token = _REQUEST_ID.set(rid)
    try:
        yield rid
    finally:
        _REQUEST_ID.reset(token)


def new_request_id() -> str:
    """Return a new id: 32 random lowercase hex digits, the shape of ``uuid4().hex``.

    Why not uuid4: it builds a UUID object to format the same bytes, 5x the cost, and the
    gateway makes one per request.
    """
    return os.urandom(16).hex()


def clean_request_id(value: str | None) -> str | None:
    """Return value if it is a safe request id (1-64 of ``A-Za-z0-9._:-``), else None."""
    if value and _SAFE_ID.fullmatch(value):
        return value
    return None


# --- redaction -------------------------------------------------------------------------------

_SECRETS = re.compile(
    r"""
      (?P<athk>\bathk_)[A-Za-z0-9_\-]+               # Athena service keys (backends.services)
    | (?P<bearer>\b[Bb]earer\s+)                     # RFC 6750 credentials: ones with a
      (?=[A-Za-z._~+/=\-]*[0-9]|[A-Za-z0-9._~+/=\-]{16}) #   digit or 16+ characters, so prose
      [A-Za-z0-9._~+/=\-]+                           #   ("bearer token", realm=) stays
    | (?P<sk>\bsk-)[A-Za-z0-9_\-]{8,}                # OpenAI-style keys (sk-..., sk-proj-...)
    """,
    re.VERBOSE,
)
REDACTED = "[REDACTED]"


def _mask(match: re.Match[str]) -> str:
    prefix = match.group("athk") or match.group("bearer") or match.group("sk")
    return prefix + REDACTED


def redact(text: str) -> str:
    """Replace every key, token and bearer credential in text with ``[REDACTED]``."""
    if "athk_" not in text and "earer" not in text and "sk-" not in text:
        return text  # the common case: no regex pass at all
    return _SECRETS.sub(_mask, text)


class RedactingFilter(logging.Filter):
    """Redact secrets from a record's message, arguments and extra string fields.

    Attached to handlers (not loggers), so records propagated from any library pass it.
    The formatters below also redact their finished output, which covers tracebacks.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a broken format string must still be logged
                message = f"{record.msg!r} % {record.args!r}"
            record.msg, record.args = redact(message), None
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        for key, value in _extra_fields(record).items():
            if isinstance(value, str):
                setattr(record, key, redact(value))
        return True


# --- formatters ------------------------------------------------------------------------------

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName", "request_id", "service"}
)


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class _AthenaFormatter(logging.Formatter):
    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.service:
            out["service"] = self.service
        rid = getattr(record, "request_id", None) or _REQUEST_ID.get()
        if rid:
            out["request_id"] = rid
        out.update(_extra_fields(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return out


class JsonFormatter(_AthenaFormatter):
    """One JSON object per line (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(json.dumps(self.fields(record), default=str, ensure_ascii=False))


class KeyValueFormatter(_AthenaFormatter):
    """``ts LEVEL logger: message key=value ...``: readable on a terminal, still greppable."""

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        head = (
            f"{fields.pop('ts')} {fields.pop('level'):<7} {fields.pop('logger')}: "
            f"{fields.pop('msg')}"
        )
        exc = fields.pop("exc", None)
        stack = fields.pop("stack", None)
        parts = [head, *(f"{k}={_kv(v)}" for k, v in fields.items())]
        text = " ".join(parts)
        for block in (exc, stack):
            if block:
                text += "\n" + block
        return redact(text)


def _kv(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not any(c in text for c in ' "=\n\t\\'):
        return text
    return json.dumps(text, ensure_ascii=False)


# --- configuration ---------------------------------------------------------------------------

_FORMATTERS = {"json": JsonFormatter, "text": KeyValueFormatter}


def log_format(environ: Mapping[str, str] | None = None) -> str:
    """``ATHENA_LOG_FORMAT`` (``json`` or ``text``); unset: ``json`` unless ATHENA_DEBUG is true."""
    env = os.environ if environ is None else environ
    chosen = env.get("ATHENA_LOG_FORMAT", "").strip().lower()
    if chosen:
        if chosen not in _FORMATTERS:
            raise ValueError(f"ATHENA_LOG_FORMAT must be json or text, got {chosen!r}")
        return chosen
    debug = env.get("ATHENA_DEBUG", "true").strip().lower() in {"1", "true", "yes", "on"}
    return "text" if debug else "json"


def logging_config(
    *,
    service: str | None = None,
    fmt: str | None = None,
    level: str | int = "INFO",
    loggers: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Return a ``logging.config.dictConfig`` dict: one stderr handler, redacting, on root."""
    fmt = fmt or log_format()
    if fmt not in _FORMATTERS:
        raise ValueError(f"log format must be json or text, got {fmt!r}")
    level_name = logging.getLevelName(level) if isinstance(level, int) else str(level).upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactingFilter}},
        "formatters": {"athena": {"()": _FORMATTERS[fmt], "service": service}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "athena",
                "filters": ["redact"],
            }
        },
        "root": {"handlers": ["console"], "level": level_name},
        "loggers": {
            # uvicorn's loggers keep their own handlers unless told to propagate to root.
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
            # httpx logs every request at INFO: one line per backend call is noise.
            "httpx": {"level": "WARNING"},
            **{name: dict(cfg) for name, cfg in (loggers or {}).items()},
        },
    }


def configure_logging(
    *,
    service: str | None = None,
    fmt: str | None = None,
    level: str | int = "INFO",
    stream: IO[str] | None = None,
) -> None:
    """Send every log record to stderr (or stream) in Athena's format, redacted."""
    config = logging_config(service=service, fmt=fmt, level=level)
    if stream is not None:
        config["handlers"]["console"]["stream"] = stream
    logging.config.dictConfig(config)


def make_handler(
    stream: IO[str] | None = None, *, service: str | None = None, fmt: str = "json"
) -> logging.Handler:
    """A stream handler with Athena's formatter and the redacting filter (tests, embedding)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_FORMATTERS[fmt](service))
    handler.addFilter(RedactingFilter())
    return handler
