"""The models the gateway serves (the registry's enabled routes) and which were used lately."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

from routing import LLMRouter, Route, RoutingError

__all__ = ["KEEP_ALIVE_SECONDS", "ModelCatalog"]

logger = logging.getLogger(__name__)

# Ollama keeps a model loaded 5 minutes after its last use (docs/api.md, keep_alive); /api/ps
# reports a model the gateway served within that window.
KEEP_ALIVE_SECONDS = 300.0


class ModelCatalog:
    """List routes from the router (cached briefly) and remember when each model last served."""

    def __init__(self, router_getter: object, *, ttl: float) -> None:
        self._router_getter = router_getter
        self._ttl = ttl
        self._routes: list[Route] | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self._last_used: dict[str, float] = {}
        self.started_at = time.time()

    async def routes(self) -> list[Route]:
        """Every enabled route, admin's answer at most ``ttl`` seconds old.

        While the admin cannot answer, the last list is served again, or (none yet) the
        routes the router knows from its cache: the models it serves through the outage.
        """
        if self._routes is not None and self._expires > time.monotonic():
            return self._routes
        async with self._lock:  # one admin call however many clients list at once
            if self._routes is None or self._expires <= time.monotonic():
                router: LLMRouter = self._router_getter()  # type: ignore[operator]
                try:
                    listed = await router.routes()
                except RoutingError as exc:
                    known = self._routes if self._routes is not None else router.cached_routes()
                    if not known:
                        raise
                    logger.warning("gateway: listing models from the cache: %s", exc)
                    listed = known
                self._routes = sorted(listed, key=lambda r: r.model)
                self._expires = time.monotonic() + self._ttl
        return self._routes

    async def names_or_none(self) -> list[str] | None:
        """Model names, or None when the admin cannot be asked (for error messages)."""
        try:
            return [r.model for r in await self.routes()]
        except RoutingError:
            return None

    def note_served(self, model: str) -> None:
        self._last_used[model] = time.time()

    def recently_served(self) -> list[tuple[str, float]]:
        """(model, expires_at wall time) for models served within the keep-alive window."""
        now = time.time()
        live = [
            (m, t + KEEP_ALIVE_SECONDS)
            for m, t in self._last_used.items()
            if t + KEEP_ALIVE_SECONDS > now
        ]
        return sorted(live)


def route_digest(route: Route) -> str:
    """A stable sha256 of a route's chain: changes when the registry entry changes."""
    text = "|".join(f"{t.backend_type} {t.endpoint_url} {t.upstream_model}" for t in route.targets)
    return hashlib.sha256(f"{route.model}|{text}".encode()).hexdigest()
