"""Who may call the gateway: service keys, a pluggable bearer-token hook, loopback if opened.

Keys are checked against the registry database (``backends.services.service_key_authenticate``)
in a worker thread, never on the event loop, and a positive answer is cached for
``auth_cache_seconds`` under the key's SHA-256, so the hot path does no query. The price:
a revoked key (or a user taken out of a group) keeps working for at most that long in a
running gateway.

A flood of bogus credentials must not delay a good one (issue 14, item 15), so the work per
bad credential is bounded:

- a key that is not of the shape ``service_key_create`` makes is refused before any thread,
  query or hash;
- a refused credential is remembered for ``auth_negative_cache_seconds`` under its hash;
- concurrent checks of one credential share one look-up (single flight);
- one client address may have at most ``max_pending_checks`` distinct checks waiting; more
  are answered 429 at once (``ChecksOverloaded``) instead of queueing;
- keys and bearer tokens are checked in two separate threads, so a slow identity provider
  never holds up a key, and each thread keeps its database connection while it has work
  (opening one per check was what made a bad key cost milliseconds) and closes it when idle.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import ipaddress
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from athena_admin.gateway.config import GatewayConfig

__all__ = ["USE_PERMISSION", "Authenticator", "ChecksOverloaded", "Principal"]
__all__ += ["presented_credentials"]

# backends.services.service_key_create: "athk_" + 12 hex + "_" + token_urlsafe(32) (43
# characters). Repeated here to keep Django off import; a test makes a key and checks it fits.
_SERVICE_KEY_SHAPE = re.compile(r"athk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
_KEY_PREFIX = "athk_"
_MAX_TOKEN_LENGTH = 4096  # as identity.bearer: a JWT with many claims; longer is garbage
_MAX_CACHED = 10_000
# The permission a user needs to send requests to models (backends.LLMBackend.Meta).
USE_PERMISSION = "backends.use_llmbackend"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is from; ``kind`` is ``service_key``, ``bearer`` or ``loopback``.

    ``may_use_models`` is false for a user without ``backends.use_llmbackend``: such a
    request is answered 403 (the key is valid, the account may not use models).
    ``operator``: a user who may change registry entries (or a superuser); only operators
    read endpoint URLs and upstreams' own error text in answers (docs/gateway.md).
    """

    name: str
    kind: str
    may_use_models: bool = True
    operator: bool = False


LOOPBACK = Principal("loopback", "loopback")


class ChecksOverloaded(Exception):
    """This client address has too many credential checks waiting; answer 429."""


def presented_credentials(api_key: str | None, authorization: str | None) -> str | None:
    """Return the key or token: ``X-API-Key``, else ``Authorization: Bearer <token>``."""
    if api_key and api_key.strip():
        return api_key.strip()
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def well_formed(credentials: str) -> bool:
    """Whether the credentials could be valid at all: worth a look-up."""
    if credentials.startswith(_KEY_PREFIX):
        return _SERVICE_KEY_SHAPE.fullmatch(credentials) is not None
    return (
        len(credentials) <= _MAX_TOKEN_LENGTH
        and credentials.isascii()
        and credentials.isprintable()
    )


def _may_use_models(who: Any) -> bool:
    """A user (or ServicePrincipal) needs the permission; a hook's plain name is trusted."""
    has_perm = getattr(who, "has_perm", None)
    return bool(has_perm(USE_PERMISSION)) if callable(has_perm) else True


def _check_service_key(raw: str) -> Principal | None:
    from backends.services import service_key_authenticate

    key = service_key_authenticate(raw)
    if key is None:
        return None
    if key.owner is not None:
        if not key.owner.is_active:
            return None
        owner = key.owner
        return Principal(
            owner.get_username(),
            "service_key",
            _may_use_models(owner),
            operator=_is_operator(owner),
        )
    # A key without an owner is a service's: it may use every model.
    return Principal(f"service:{key.name}", "service_key")


def _bearer_principal(who: Any) -> Principal | None:
    if not who:
        return None
    name = getattr(who, "get_username", None)
    return Principal(
        str(name() if callable(name) else who),
        "bearer",
        _may_use_models(who),
        operator=_is_operator(who),
    )


# The permission that lets a user edit the registry, where endpoint URLs are plain to read.
OPERATOR_PERMISSION = "backends.change_llmbackend"


def _is_operator(who: Any) -> bool:
    """Whether a user may read endpoint URLs: a superuser, or one who may change entries."""
    if getattr(who, "is_superuser", False) is True:
        return True
    has_perm = getattr(who, "has_perm", None)
    return bool(has_perm(OPERATOR_PERMISSION)) if callable(has_perm) else False


class _CheckThread:
    """Worker threads for database checks; a thread's connection is closed when it idles.

    Why threads per kind and not Django's shared sync thread: a slow provider behind the
    bearer hook must not hold up key checks. Why keep the connection while busy: connecting
    costs far more than the indexed look-up, and under a flood of bad keys that decided how
    long a good key waited.
    """

    def __init__(self, name: str, workers: int = 1) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._workers = workers
        self._queued = 0
        self._lock = threading.Lock()

    async def run(self, fn: Callable[[Any], Any], argument: Any) -> Any:
        with self._lock:
            self._queued += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, argument)

    def _call(self, fn: Callable[[Any], Any], argument: Any) -> Any:
        try:
            return fn(argument)
        finally:
            with self._lock:
                self._queued -= 1
                # No backlog to keep every thread busy: this one may go idle.
                idle = self._queued < self._workers
            if idle:
                _close_database_connection()


def _close_database_connection() -> None:
    """Close this thread's connection, if Django is in use at all (a custom hook may not)."""
    from django.conf import settings

    if settings.configured:
        # A connection held by an idle thread of a long-lived process goes stale (and
        # would keep a test database from being dropped).
        from django.db import connection

        connection.close()


class Authenticator:
    """Decide who a request is from, or that it may not come in (None)."""

    def __init__(self, config: GatewayConfig) -> None:
        self._ttl = config.auth_cache_seconds
        self._negative_ttl = config.auth_negative_cache_seconds
        self._max_pending = config.max_pending_checks
        self._open_on_loopback = config.open_on_loopback
        self._bearer = config.bearer_authenticator
        self._cache: dict[bytes, tuple[Principal | None, float]] = {}
        self._in_flight: dict[bytes, asyncio.Future[Principal | None]] = {}
        self._pending_by_client: dict[str, int] = {}
        self._key_thread = _CheckThread("gateway-key-check")
        # Bearer checks may wait on the provider (up to its timeout): a few at a time.
        self._bearer_thread = _CheckThread("gateway-bearer-check", workers=4)

    async def authenticate(
        self, api_key: str | None, authorization: str | None, client_host: str | None
    ) -> Principal | None:
        """Return the request's principal, or None when it must be answered 401.

        Raises ChecksOverloaded (answer 429) when the client has too many checks waiting.
        """
        credentials = presented_credentials(api_key, authorization)
        if credentials is not None:
            principal = await self._cached_check(credentials, client_host or "")
            if principal is not None:
                return principal
        if self._open_on_loopback and _is_loopback(client_host):
            # Home use: anything on this machine may call, whatever it sends (OpenAI SDKs
            # insist on sending some api_key).
            return LOOPBACK
        return None

    async def _cached_check(self, credentials: str, client: str) -> Principal | None:
        if not well_formed(credentials):
            return None
        digest = hashlib.sha256(credentials.encode()).digest()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        running = self._in_flight.get(digest)
        if running is None:
            pending = self._pending_by_client.get(client, 0)
            if pending >= self._max_pending:
                raise ChecksOverloaded(client)
            self._pending_by_client[client] = pending + 1
            # A task of its own, shielded below: a client that goes away mid-check cancels
            # neither the check nor the other requests waiting on it.
            running = asyncio.ensure_future(self._check(credentials))
            self._in_flight[digest] = running
            running.add_done_callback(lambda task: self._finished(digest, client, task))
        return await asyncio.shield(running)

    def _finished(self, digest: bytes, client: str, task: asyncio.Future[Principal | None]) -> None:
        self._in_flight.pop(digest, None)
        left = self._pending_by_client.pop(client, 1) - 1
        if left:
            self._pending_by_client[client] = left
        if not task.cancelled() and task.exception() is None:  # exception() marks it seen
            self._remember(digest, task.result())

    def _remember(self, digest: bytes, principal: Principal | None) -> None:
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()  # crude but bounded; a full cache means a flood of bad keys
        ttl = self._ttl if principal is not None else self._negative_ttl
        self._cache[digest] = (principal, time.monotonic() + ttl)

    async def _check(self, credentials: str) -> Principal | None:
        if credentials.startswith(_KEY_PREFIX):
            return await self._key_thread.run(_check_service_key, credentials)  # type: ignore[no-any-return]
        if self._bearer is None:
            return None
        # The hook (e.g. identity's authenticate_bearer) may be sync and use the ORM: run it
        # in a worker thread, off the event loop; so is the permission check on what it says.
        if inspect.iscoroutinefunction(self._bearer):
            who = await self._bearer(credentials)
            return await self._bearer_thread.run(_bearer_principal, who)  # type: ignore[no-any-return]
        hook = self._bearer
        return await self._bearer_thread.run(  # type: ignore[no-any-return]
            lambda token: _bearer_principal(hook(token)), credentials
        )


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
