"""A fixed-window rate limiter on Django's cache: login pages, the token endpoint, and the
API's password (HTTP Basic) and bearer-token failures.

Why not django-ratelimit: a few call sites (logins and the token endpoint), all keyed on
something the decorator would need a custom key function for anyway; forty lines on the
cache Athena already has beat a new dependency. DRF views use DRF's throttles instead.
Behind a proxy, set ATHENA_RATELIMIT_IP_HEADER (e.g. HTTP_X_REAL_IP) to a header the
proxy overwrites, or every client shares the proxy's address.
"""

import hashlib
import time

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

_PERIODS = {"second": 1, "minute": 60, "hour": 3600}


def parse_rate(rate: str) -> tuple[int, int]:
    """'10/minute' -> (10, 60)."""
    count, _, period = rate.partition("/")
    try:
        return int(count), _PERIODS[period.strip().rstrip("s") or "minute"]
    except (ValueError, KeyError):
        raise ImproperlyConfigured(
            f"Bad rate {rate!r}: use '<count>/<second|minute|hour>'"
        ) from None


def client_ip(request: HttpRequest) -> str:
    value = request.META.get(settings.ATHENA_RATELIMIT_IP_HEADER) or request.META.get(
        "REMOTE_ADDR", ""
    )
    return value.split(",")[0].strip()


def _cache_key(scope: str, key: str, period: int) -> str:
    window = int(time.time() // period)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"identity:ratelimit:{scope}:{digest}:{window}"


def hit(scope: str, key: str, rate: str) -> bool:
    """Count one attempt; return False when the caller is over the limit."""
    limit, period = parse_rate(rate)
    cache_key = _cache_key(scope, key, period)
    # add() is atomic on every cache backend; incr() is atomic on Redis and memcached.
    if cache.add(cache_key, 1, timeout=period + 1):
        return limit >= 1
    try:
        return cache.incr(cache_key) <= limit
    except ValueError:  # expired between add() and incr()
        cache.add(cache_key, 1, timeout=period + 1)
        return True


def exhausted(scope: str, key: str, rate: str) -> bool:
    """Whether the caller has used up this window, without counting an attempt."""
    limit, period = parse_rate(rate)
    return int(cache.get(_cache_key(scope, key, period)) or 0) >= limit


def seconds_left(rate: str) -> int:
    """Seconds until this rate's window ends (a Retry-After value, at least 1)."""
    _, period = parse_rate(rate)
    return max(1, int(period - time.time() % period) + 1)


def login_pair(request: HttpRequest, username: str) -> str:
    """The key for password attempts: (address, username), so a guesser elsewhere cannot
    lock the real user out by failing on purpose."""
    return f"{client_ip(request)}|{username.lower()}"
