"""Run the server: python -m mlx_server --model PATH [--port 11435]."""

from __future__ import annotations

import sys

import uvicorn

from routing.logs import configure_logging

from .app import create_app
from .settings import from_argv


def main(argv: list[str] | None = None) -> int:
    """Parse flags, check the model folders exist, and serve until interrupted."""
    settings = from_argv(argv)
    # routing/logs.py's format (JSON lines with ATHENA_LOG_FORMAT=json or ATHENA_DEBUG=false,
    # else key=value), with the request id of each request and secrets redacted.
    configure_logging(service="mlx_server", level=settings.log_level)
    missing = [
        str(p) for p in (*settings.model_paths, *settings.aliases.values()) if not p.exists()
    ]
    if settings.models_dir is not None and not settings.models_dir.is_dir():
        missing.append(str(settings.models_dir))
    if missing:
        print(f"mlx_server: not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    # The decode thread needs the GIL back after every MLX evaluation; with the default
    # 5 ms switch interval a busy event loop can hold it for most of a tiny model's step.
    sys.setswitchinterval(0.0005)
    app = create_app(settings)
    # One worker on purpose: models live in this process's engine threads.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        log_config=None,  # keep the format above; uvicorn's loggers propagate to it
        # Streams still open at shutdown are cut after this long; then engines stop.
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
