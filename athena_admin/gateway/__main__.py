"""python -m athena_admin.gateway [--host 127.0.0.1] [--port 11400]"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "athena_admin.settings")
    import django

    django.setup()
    from django.conf import settings

    parser = argparse.ArgumentParser(prog="python -m athena_admin.gateway")
    parser.add_argument("--host", default=settings.ATHENA_GATEWAY_HOST)
    parser.add_argument("--port", type=int, default=settings.ATHENA_GATEWAY_PORT)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    import uvicorn

    from athena_admin.gateway import create_app
    from routing.logs import configure_logging

    # routing/logs.py's format (JSON lines in production), tagged as the gateway; uvicorn's
    # own loggers propagate to it (log_config=None below). At `info`, one line per request.
    configure_logging(service="gateway", level=args.log_level)

    app = create_app()
    # One process, one event loop, one router (its connection pool and route cache are
    # per process). uvloop and httptools when installed (uvicorn[standard]).
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
