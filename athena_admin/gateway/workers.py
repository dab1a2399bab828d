"""Several gateway processes on one port: uvicorn's workers, with metrics summed across them.

One Python process tops out near 4,000 requests/s (~240 µs of CPU each), so a host with spare
cores runs several. uvicorn binds the socket in the parent and spawns the workers (the
``spawn`` start method: each child imports afresh, then calls the app factory named by an
import string). Each worker is a whole gateway: Django, logging, its own router (connection
pool, route cache, circuit breakers, metrics shipping) and authentication cache.

Prometheus counters live in each process, so a scrape answered by one worker would show only
its share. prometheus_client's multiprocess mode fixes that: every worker writes its values to
memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` (set in the parent before any worker
starts, so each child imports prometheus_client in that mode) and ``/metrics`` sums the files.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import replace
from socket import socket

from prometheus_client import multiprocess
from uvicorn import Config

from athena_admin.gateway._uvicorn_compat import STARTUP_FAILURE, Multiprocess
from athena_admin.gateway.app import GatewayApp, create_app
from athena_admin.gateway.config import GatewayConfig

__all__ = ["MULTIPROC_DIR_ENV", "build_worker_app", "serve_workers", "worker_app"]

# prometheus_client reads this when it is imported, in each worker (its documented name).
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# uvicorn calls a factory with no arguments: the parent hands the log level over the
# environment, which spawned workers inherit.
_LOG_LEVEL_ENV = "ATHENA_GATEWAY_WORKER_LOG_LEVEL"
DEFAULT_FACTORY = "athena_admin.gateway.workers:worker_app"


def serve_workers(
    factory: str = DEFAULT_FACTORY,
    *,
    workers: int,
    host: str,
    port: int,
    log_level: str = "warning",
) -> None:
    """Serve the app that ``factory`` (``module:function``) builds from ``workers`` processes."""
    metrics_dir = _fresh_metrics_dir()
    os.environ[MULTIPROC_DIR_ENV] = metrics_dir
    os.environ[_LOG_LEVEL_ENV] = log_level
    from athena_admin.gateway.__main__ import UVICORN_OPTIONS

    # The same options as serve()'s single process, plus the factory and the worker count.
    config = Config(
        factory,
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level=log_level,
        **UVICORN_OPTIONS,
    )
    sock = config.bind_socket()
    supervisor = _Supervisor(config, sockets=[sock], metrics_dir=metrics_dir)
    try:
        supervisor.run()
    finally:
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if supervisor.a_worker_failed_to_start():
        # uvicorn's parent stops then, but exits 0; exit as one process does (uvicorn.run),
        # so systemd's Restart=on-failure and scripts see it.
        sys.exit(STARTUP_FAILURE)


def _fresh_metrics_dir() -> str:
    """Make an empty, private directory for this run's metric files.

    Why fresh: files left by an earlier run would be summed into this one's counters.
    """
    return tempfile.mkdtemp(prefix="athena-gateway-metrics-")


class _Supervisor(Multiprocess):
    """uvicorn's worker supervisor, also telling prometheus_client which workers are gone.

    A worker that exits (crashed, or replaced on SIGHUP/SIGTTOU) keeps its counted values,
    as Prometheus counters must, but its live gauges are removed (``mark_process_dead``).
    """

    def __init__(self, config: Config, sockets: list[socket], *, metrics_dir: str) -> None:
        super().__init__(config, sockets)
        self._metrics_dir = metrics_dir
        self._known_pids: set[int] = set()

    def keep_subprocess_alive(self) -> None:
        # Runs every half second in the supervisor's loop, after any restart or resize.
        super().keep_subprocess_alive()
        running = {p.pid for p in self.processes if p.pid is not None}
        for pid in self._known_pids - running:
            multiprocess.mark_process_dead(pid, self._metrics_dir)
        self._known_pids = running

    def a_worker_failed_to_start(self) -> bool:
        return any(p.exitcode == STARTUP_FAILURE for p in self.processes)


def build_worker_app(config: GatewayConfig) -> GatewayApp:
    """Build one worker's gateway, its metrics in the shared directory, start-up GC-frozen."""
    from athena_admin.gateway.__main__ import tune_gc

    app = create_app(replace(config, metrics_multiprocess_dir=os.environ[MULTIPROC_DIR_ENV]))
    tune_gc()  # as serve() does for one process: after everything is imported and built
    return app


def worker_app() -> GatewayApp:
    """uvicorn's app factory, called in each worker: set up as ``python -m`` does for one."""
    from athena_admin.gateway.__main__ import configure, setup_django

    setup_django()
    configure(log_level=os.environ.get(_LOG_LEVEL_ENV, "warning"))
    return build_worker_app(GatewayConfig.from_settings())
