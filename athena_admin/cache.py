"""Django's Redis cache, failing open to local memory while Redis is unreachable.

Throttles, the login limiter and the bearer-token cache all sit on the default cache. With
plain RedisCache, a Redis outage turned every API call, login and token request into a 500.
Here a failed Redis operation is answered by a per-process LocMemCache instead: limits keep
counting (per process, so looser) and caches keep working (colder), which is better than no
service. For RETRY_SECONDS after a failure the process does not try Redis at all, so an
outage costs one connection timeout per process and interval, not one per request.

Each outage is logged once when it starts and once when it ends, and counted in
`athena_admin_cache_failures_total` / `athena_admin_cache_degraded` (athena_admin/counters.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

from athena_admin.counters import CACHE_DEGRADED, CACHE_FAILURES

__all__ = ["FailOpenRedisCache"]

logger = logging.getLogger(__name__)

# Django makes one cache object per thread; the outage is the process's, shared by all.
_outages: dict[str, float] = {}  # location -> monotonic time before which Redis is skipped
_outages_lock = threading.Lock()


class FailOpenRedisCache(RedisCache):
    """RedisCache whose operations fall back to local memory when Redis fails.

    OPTIONS takes RedisCache's options plus FAIL_OPEN_RETRY_SECONDS (default 5): how long
    after a failure Redis is left alone. Give socket_connect_timeout and socket_timeout too,
    or a Redis that stops answering holds each request for the operating system's timeout.
    """

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS", {}))
        self.retry_seconds = float(options.pop("FAIL_OPEN_RETRY_SECONDS", 5.0))
        super().__init__(server, {**params, "OPTIONS": options})
        self._location = server
        self._local = LocMemCache(f"athena-fail-open:{server}", params)

    def _redis_skipped(self) -> bool:
        return _outages.get(self._location, 0.0) > time.monotonic()

    def _failed(self, operation: str, exc: RedisError) -> None:
        CACHE_FAILURES.labels(operation).inc()
        with _outages_lock:
            starting = self._location not in _outages
            _outages[self._location] = time.monotonic() + self.retry_seconds
        if starting:
            CACHE_DEGRADED.set(1)
            logger.warning(
                "shared cache unreachable (%s: %s); throttles and caches use this process's "
                "memory until it answers again (retry every %g s)",
                type(exc).__name__, exc, self.retry_seconds,
            )  # fmt: skip

    def _answered(self) -> None:
        if self._location in _outages:
            with _outages_lock:
                ended = _outages.pop(self._location, None) is not None
            if ended:
                CACHE_DEGRADED.set(0)
                logger.warning("shared cache answers again; throttles and caches use it")


def _fail_open(name: str) -> Callable[..., Any]:
    redis_method = getattr(RedisCache, name)

    def method(self: FailOpenRedisCache, *args: Any, **kwargs: Any) -> Any:
        if not self._redis_skipped():
            try:
                result = redis_method(self, *args, **kwargs)
            except RedisError as exc:
                self._failed(name, exc)
            else:
                self._answered()
                return result
        return getattr(self._local, name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"RedisCache.{name}, or local memory while Redis is unreachable."
    return method


# Every operation RedisCache implements; BaseCache builds the rest (decr, get_or_set, the
# async variants) on top of these.
for _name in (
    "add", "get", "set", "touch", "delete", "get_many", "has_key", "incr", "set_many",
    "delete_many", "clear",
):  # fmt: skip
    setattr(FailOpenRedisCache, _name, _fail_open(_name))
