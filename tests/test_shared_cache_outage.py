"""Redis (the shared cache) going away degrades throttles and caches to local memory, not 500s."""

import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.cache import cache
from django.test import Client
from oidc_provider.models import Client as OIDCClient
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from tests.backends.celery_workers import ThrowawayRedis
from tests.backends.samples import sample


@pytest.fixture
def shared_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_cache(
    shared_redis: ThrowawayRedis, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The settings ATHENA_CACHE_URL gives, on our own Redis, with throttles switched on."""
    settings.CACHES = {
        "default": {
            "BACKEND": "athena_admin.cache.FailOpenRedisCache",
            "LOCATION": shared_redis.url,
            "OPTIONS": {
                "socket_connect_timeout": 0.5,
                "socket_timeout": 0.5,
                "FAIL_OPEN_RETRY_SECONDS": 0.5,
            },
        }
    }
    # DRF reads the rates into the class when it is imported; development turns them off.
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {"anon": "1000/minute", "user": "1000/minute"}
    )
    settings.ATHENA_LOGIN_RATE = "3/hour"  # no window boundary inside a test
    settings.ATHENA_TOKEN_RATE = "100/minute"
    return settings


def _metric(name: str) -> float:
    text = Client().get("/metrics").content.decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values)


def _everything_answers(operator: Any, service_key: str) -> dict[str, int]:
    """One call to each entry point that touched the cache and answered 500 without Redis."""
    as_operator = APIClient()
    as_operator.force_authenticate(operator)
    as_service = APIClient(HTTP_AUTHORIZATION=f"Bearer {service_key}")
    samples = {"samples": [sample(None)]}
    return {
        "registry": as_operator.get("/api/llm-backends").status_code,
        "route": as_service.get("/api/route/phi3:mini").status_code,
        "ingest": as_service.post("/api/metrics/samples", samples, format="json").status_code,
        "login": Client()
        .post("/admin/login/", {"username": "olivia", "password": "x"})
        .status_code,
        "token": Client()
        .post(
            "/openid/token",
            {"grant_type": "client_credentials", "client_id": "svc", "client_secret": "wrong"},
        )
        .status_code,
    }


EXPECTED = {"registry": 200, "route": 200, "ingest": 202, "login": 200, "token": 400}


@pytest.fixture
def oidc_client(db: None) -> OIDCClient:
    return OIDCClient.objects.create(
        name="svc", client_id="svc", client_secret="right", client_type="confidential"
    )


def test_every_entry_point_keeps_answering_while_redis_is_down(
    redis_cache: Any,
    shared_redis: ThrowawayRedis,
    operator: Any,
    service_key: str,
    make_entry: Any,
    oidc_client: OIDCClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_entry("phi3:mini")
    assert _everything_answers(operator, service_key) == EXPECTED
    assert redis.Redis.from_url(shared_redis.url).dbsize() > 0  # the counters were in Redis
    failures_before = _metric("athena_admin_cache_failures_total")

    shared_redis.kill()
    with caplog.at_level(logging.WARNING, logger="athena_admin.cache"):
        assert _everything_answers(operator, service_key) == EXPECTED
    assert "shared cache unreachable" in caplog.text
    assert _metric("athena_admin_cache_degraded") == 1
    assert _metric("athena_admin_cache_failures_total") > failures_before


def test_limits_still_hold_in_local_memory_while_redis_is_down(
    redis_cache: Any, shared_redis: ThrowawayRedis, db: None
) -> None:
    shared_redis.kill()
    name = f"guesser-{uuid.uuid4().hex}"  # counts of an earlier test cannot reach this one
    codes = [
        Client().post("/admin/login/", {"username": name, "password": f"guess-{n}"}).status_code
        for n in range(5)
    ]
    assert codes == [200, 200, 200, 429, 429]  # fail open to memory, not to no limit at all


def test_the_cache_goes_back_to_redis_when_it_returns(
    redis_cache: Any, shared_redis: ThrowawayRedis, caplog: pytest.LogCaptureFixture, db: None
) -> None:
    shared_redis.kill()
    cache.set("k", "local")
    assert cache.get("k") == "local"
    assert _metric("athena_admin_cache_degraded") == 1
    shared_redis.start()
    time.sleep(0.6)  # past FAIL_OPEN_RETRY_SECONDS
    with caplog.at_level(logging.WARNING, logger="athena_admin.cache"):
        cache.set("k", "shared")
    assert redis.Redis.from_url(shared_redis.url).dbsize() == 1
    assert cache.get("k") == "shared"
    assert "answers again" in caplog.text
    assert _metric("athena_admin_cache_degraded") == 0


def test_athena_cache_url_selects_the_fail_open_cache() -> None:
    env = {**os.environ, "ATHENA_CACHE_URL": "redis://127.0.0.1:1/1"}
    env["DJANGO_SETTINGS_MODULE"] = "athena_admin.settings"
    code = "from django.conf import settings; c = settings.CACHES['default']; print(c['BACKEND'], c['OPTIONS'])"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("athena_admin.cache.FailOpenRedisCache ")
    assert "'socket_timeout': 0.5" in done.stdout
