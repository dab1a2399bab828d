"""python -m athena_admin.gateway [--host 127.0.0.1] [--port 11400] [--workers 1]"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Any

__all__ = ["UVICORN_OPTIONS", "configure", "main", "serve", "setup_django", "tune_gc"]


def tune_gc() -> None:
    """Freeze what start-up allocated, so no garbage collection walks it again.

    Why: Django, the router and their imports leave ~115k long-lived objects, and each full
    collection walked them all (50-85 ms on the 2-core benchmark machine), stalling every
    request in flight: the p99 at 64 concurrent clients. Frozen, a full collection took
    under 3 ms there, and all collections together half the CPU (bench/gateway_cpu.py).
    Raising the gen0 threshold saved nothing more and made each young collection longer,
    so CPython's thresholds stay. Call it after everything is imported and built.
    """
    gc.collect()
    gc.freeze()


# uvicorn's settings for every gateway process, one or several (workers.py). uvloop and
# httptools when installed (uvicorn[standard]); access_log off: the gateway writes its own
# line per request (athena_admin.gateway.access); log_config None: routing's format applies.
UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "auto",
    "http": "auto",
    "lifespan": "on",
    "access_log": False,
    "log_config": None,
    "timeout_graceful_shutdown": 5,
}


def serve(app: Any, *, host: str, port: int, log_level: str = "warning") -> None:
    """Serve app as production does: one process, uvloop and httptools, tuned GC."""
    import uvicorn

    tune_gc()
    # One process, one event loop, one router (its connection pool and route cache are
    # per process).
    uvicorn.run(app, host=host, port=port, log_level=log_level, **UVICORN_OPTIONS)


def setup_django() -> None:
    """Set Django up from athena_admin.settings (the gateway reads its settings and keys)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "athena_admin.settings")
    import django

    django.setup()


def configure(*, log_level: str) -> None:
    """Configure logging as every gateway process does."""
    from routing.logs import configure_logging

    # routing/logs.py's format (JSON lines in production), tagged as the gateway; uvicorn's
    # own loggers propagate to it (log_config=None in serve()). At `info`, one line per request.
    configure_logging(service="gateway", level=log_level)


def main(argv: list[str] | None = None) -> int:
    from django.core.exceptions import ImproperlyConfigured

    try:
        setup_django()
    except ImproperlyConfigured as exc:  # a bad ATHENA_* value: say which, no traceback
        print(f"python -m athena_admin.gateway: error: {exc}", file=sys.stderr)
        return 2
    from django.conf import settings

    parser = argparse.ArgumentParser(prog="python -m athena_admin.gateway")
    parser.add_argument("--host", default=settings.ATHENA_GATEWAY_HOST)
    parser.add_argument("--port", type=int, default=settings.ATHENA_GATEWAY_PORT)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--workers",
        type=int,
        default=settings.ATHENA_GATEWAY_WORKERS,
        help="processes sharing the port (default: ATHENA_GATEWAY_WORKERS, 1); docs/gateway.md",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        # Checked here, not by argparse's type: the default comes from the environment too.
        parser.error(
            f"--workers (ATHENA_GATEWAY_WORKERS) must be an integer >= 1, got {args.workers}"
        )

    configure(log_level=args.log_level)
    if args.workers > 1:
        from athena_admin.gateway.workers import serve_workers

        serve_workers(
            workers=args.workers, host=args.host, port=args.port, log_level=args.log_level
        )
        return 0

    from athena_admin.gateway import create_app

    serve(create_app(), host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
