"""Who may call the gateway: service keys, a pluggable bearer-token hook, loopback if opened.

Keys are checked against the registry database (``backends.services.service_key_authenticate``)
in a worker thread, never on the event loop, and a positive answer is cached for
``auth_cache_seconds`` under the key's SHA-256, so the hot path does no query. The price:
a revoked key keeps working for at most that long in a running gateway.
"""

from __future__ import annotations

import hashlib
import inspect
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async

from athena_admin.gateway.config import GatewayConfig

__all__ = ["Authenticator", "Principal", "presented_credentials"]

_KEY_PREFIX = "athk_"  # backends.services.KEY_PREFIX, repeated to keep Django off import
_MAX_CACHED = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is from; ``kind`` is ``service_key``, ``bearer`` or ``loopback``.

    ``operator``: a user who may change registry entries (or a superuser); only operators
    read endpoint URLs and upstreams' own error text in answers (docs/gateway.md).
    """

    name: str
    kind: str
    operator: bool = False


LOOPBACK = Principal("loopback", "loopback")


def presented_credentials(api_key: str | None, authorization: str | None) -> str | None:
    """Return the key or token: ``X-API-Key``, else ``Authorization: Bearer <token>``."""
    if api_key and api_key.strip():
        return api_key.strip()
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def _closing_connection(fn: Callable[[str], Any]) -> Callable[[str], Any]:
    """Run fn with a fresh database connection, closed after.

    Why: checks are rare (results are cached), and a connection held open by this long-lived
    worker thread would go stale or keep a test database busy.
    """

    def call(credentials: str) -> Any:
        from django.db import connection

        try:
            return fn(credentials)
        finally:
            connection.close()

    return call


def _check_service_key(raw: str) -> Principal | None:
    from backends.services import service_key_authenticate

    key = service_key_authenticate(raw)
    if key is None:
        return None
    if key.owner is not None:
        if not key.owner.is_active:
            return None
        return Principal(key.owner.get_username(), "service_key", _is_operator(key.owner))
    return Principal(f"service:{key.name}", "service_key")


# The permission that lets a user edit the registry, where endpoint URLs are plain to read.
OPERATOR_PERMISSION = "backends.change_llmbackend"


def _is_operator(user: Any) -> bool:
    """Whether a user may read endpoint URLs: a superuser, or one who may change entries."""
    if getattr(user, "is_superuser", False):
        return True
    has_perm = getattr(user, "has_perm", None)
    return bool(callable(has_perm) and has_perm(OPERATOR_PERMISSION))


def _bearer_principal(hook: Callable[[str], Any]) -> Callable[[str], Principal | None]:
    """Run a sync bearer hook and make its answer a Principal (in the hook's worker thread)."""

    def check(credentials: str) -> Principal | None:
        who = hook(credentials)
        return Principal(_name_of(who), "bearer", _is_operator(who)) if who else None

    return check


class Authenticator:
    """Decide who a request is from, or that it may not come in (None)."""

    def __init__(self, config: GatewayConfig) -> None:
        self._ttl = config.auth_cache_seconds
        self._negative_ttl = config.auth_negative_cache_seconds
        self._open_on_loopback = config.open_on_loopback
        self._bearer = config.bearer_authenticator
        self._cache: dict[bytes, tuple[Principal | None, float]] = {}
        self._check_key = sync_to_async(_closing_connection(_check_service_key))
        self._check_bearer = (
            sync_to_async(_closing_connection(_bearer_principal(self._bearer)))
            if self._bearer is not None
            else None
        )

    async def authenticate(
        self, api_key: str | None, authorization: str | None, client_host: str | None
    ) -> Principal | None:
        """Return the request's principal, or None when it must be answered 401."""
        credentials = presented_credentials(api_key, authorization)
        if credentials is not None:
            principal = await self._cached_check(credentials)
            if principal is not None:
                return principal
        if self._open_on_loopback and _is_loopback(client_host):
            # Home use: anything on this machine may call, whatever it sends (OpenAI SDKs
            # insist on sending some api_key).
            return LOOPBACK
        return None

    async def _cached_check(self, credentials: str) -> Principal | None:
        digest = hashlib.sha256(credentials.encode()).digest()
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        principal = await self._check(credentials)
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()  # crude but bounded; a full cache means a flood of bad keys
        ttl = self._ttl if principal is not None else self._negative_ttl
        self._cache[digest] = (principal, now + ttl)
        return principal

    async def _check(self, credentials: str) -> Principal | None:
        if credentials.startswith(_KEY_PREFIX):
            return await self._check_key(credentials)
        if self._bearer is None:
            return None
        # The hook (e.g. identity's authenticate_bearer) may be sync and use the ORM: run it
        # in the same worker thread as key checks, off the event loop.
        if inspect.iscoroutinefunction(self._bearer):
            # An async hook cannot ask the ORM for permissions here: never an operator.
            who = await self._bearer(credentials)
            return Principal(_name_of(who), "bearer") if who else None
        assert self._check_bearer is not None
        principal: Principal | None = await self._check_bearer(credentials)
        return principal


def _name_of(who: Any) -> str:
    name = getattr(who, "get_username", None)
    return str(name() if callable(name) else who)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
