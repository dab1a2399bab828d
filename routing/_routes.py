"""Where a model's chain of targets comes from: a routes file, the admin, or the default.

The admin's answers (GET /api/route/<model>, docs/architecture.md) are cached per model for
``ttl`` seconds, then revalidated with ``If-None-Match`` (a 304 only renews the entry).
Concurrent misses share one look-up. When the admin is unreachable or failing, the last-known
chain keeps being served for as long as the outage lasts (NOTES flaw 6: an outage must never
reroute traffic); the default chain (Ollama at the default URL) is used only for models never
seen, and for models the admin answers 404 for unless ``use_default_route`` is off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from routing._exceptions import InvalidRequest, ModelNotConfigured, RouteLookupError
from routing._types import MAX_MODEL_NAME, Route, Target

__all__ = ["RouteTable", "load_routes_file", "parse_route", "route_path"]

logger = logging.getLogger("routing")


class _Entry:
    __slots__ = ("route", "etag", "expires", "stale_since", "fetched")

    def __init__(
        self, route: Route | None, etag: str | None, expires: float, fetched: float
    ) -> None:
        self.route = route  # None: the admin said 404 and defaults are off
        self.etag = etag
        self.expires = expires
        self.stale_since: float | None = None
        self.fetched = fetched  # when the admin last gave (or confirmed) this answer


def route_path(model: str) -> str:
    """The admin's route look-up path for a model: the name confined to one path segment.

    Why: a name is the client's text, and the look-up carries the router's service key. With
    ``/`` left as is, ``../llm-backends/1`` was resolved by the client library as a dot segment
    and fetched another admin endpoint. ``/`` is percent-encoded (the admin's
    ``route/<path:model_name>`` decodes it back), and what has no business in a model name is
    refused: ``.``/``..`` segments, control characters, over-long names.
    """
    if not model:
        raise InvalidRequest("model must not be empty")
    if len(model) > MAX_MODEL_NAME:
        raise InvalidRequest(f"model must be at most {MAX_MODEL_NAME} characters, got {len(model)}")
    if any(segment in (".", "..") for segment in model.split("/")):
        raise InvalidRequest("model must not contain '.' or '..' path segments")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in model):
        raise InvalidRequest("model must not contain control characters")
    return "/api/route/" + quote(model, safe=":")


def parse_route(obj: Any, *, source: str, default_ollama_url: str) -> Route:
    """Build a Route from the contract's JSON; expand ``auto`` (mlx, then Ollama) if present."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("model"), str):
        raise ValueError(f"a route needs a model name: {obj!r:.200}")
    model = obj["model"]
    raw_targets = obj.get("targets")
    if not isinstance(raw_targets, list):
        raise ValueError(f"route '{model}' needs a targets list")
    targets: list[Target] = []
    for raw in raw_targets:
        target = Target.from_json(raw, model=model)
        if target.backend_type == "auto":
            # Same expansion as the admin does (docs/architecture.md): MLX first, then Ollama
            # at the default URL, both with the entry's upstream model.
            targets.append(_replace_type(target, "mlx", target.endpoint_url))
            targets.append(_replace_type(target, "ollama", default_ollama_url))
        else:
            targets.append(target)
    return Route(model=model, targets=tuple(targets), source=source)


def _replace_type(target: Target, backend_type: str, endpoint_url: str) -> Target:
    from dataclasses import replace

    return replace(target, backend_type=backend_type, endpoint_url=endpoint_url.rstrip("/"))


def load_routes_file(path: str | Path, *, default_ollama_url: str) -> dict[str, Route]:
    """Read a routes file (YAML or JSON, shaped like GET /api/routes) into routes by model."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yml", ".yaml"):
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - PyYAML is in requirements.txt
            raise RuntimeError(f"{path}: reading YAML needs PyYAML (pip install PyYAML)") from exc
        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    items = data.get("routes") if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected {{'routes': [...]}}")
    routes: dict[str, Route] = {}
    for item in items:
        route = parse_route(item, source="file", default_ollama_url=default_ollama_url)
        routes[route.model] = route
    return routes


class RouteTable:
    """Resolve a model to its Route; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        client: Callable[[], httpx.AsyncClient],
        admin_url: str | None,
        service_key: str | None,
        ttl: float,
        admin_timeout: float,
        file_routes: Mapping[str, Route],
        default_ollama_url: str,
        use_default_route: bool,
        outage_retry: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._admin_url = admin_url.rstrip("/") if admin_url else None
        self._headers = {"Authorization": f"Bearer {service_key}"} if service_key else {}
        self._ttl = ttl
        self._timeout = httpx.Timeout(admin_timeout)
        self._file = dict(file_routes)
        self._default_url = default_ollama_url.rstrip("/")
        self._use_default = use_default_route
        self._outage_retry = min(outage_retry, ttl) if ttl > 0 else outage_retry
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        # Look-ups in flight, per event loop (a future belongs to the loop that made it).
        self._inflight: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Future[Route]] = {}
        self.admin_lookups = 0

    async def get(self, model: str) -> Route:
        """Return the model's route; raise ModelNotConfigured or RouteLookupError."""
        route = self._file.get(model)
        if route is not None:
            return route
        entry = self._entries.get(model)
        if entry is not None and entry.expires > self._clock():
            if entry.route is None:
                raise ModelNotConfigured(model)
            return entry.route
        if self._admin_url is None:
            raise ModelNotConfigured(
                model, f"model '{model}' is not in the routes file and no admin is configured"
            )
        path = route_path(model)  # before any look-up: raises InvalidRequest
        key = (asyncio.get_running_loop(), model)
        task = self._inflight.get(key)
        if task is None:
            # Single flight: one look-up per model however many callers miss at once. The
            # task outlives a cancelled first caller, so the others still get their answer.
            task = asyncio.ensure_future(self._refresh(model, path, entry))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    def ages(self) -> dict[str, float]:
        """Seconds since each cached route was fetched or revalidated, by model."""
        now = self._clock()
        return {m: now - e.fetched for m, e in self._entries.items() if e.route is not None}

    def known_routes(self) -> list[Route]:
        """Every route known now without asking the admin: the file's, then the cached ones."""
        cached = [
            e.route for m, e in self._entries.items() if e.route is not None and m not in self._file
        ]
        return [*self._file.values(), *(r for r in cached if r.source != "default")]

    def has_route(self, model: str) -> bool:
        """Whether a route for the model is known now, from the file or the cache."""
        if model in self._file:
            return True
        entry = self._entries.get(model)
        return entry is not None and entry.route is not None

    def default_route(self, model: str) -> Route:
        target = Target(
            backend_type="ollama",
            endpoint_url=self._default_url,
            upstream_model=model,
            model_name=model,
        )
        return Route(model=model, targets=(target,), source="default")

    async def _refresh(self, model: str, path: str, entry: _Entry | None) -> Route:
        assert self._admin_url is not None
        headers = dict(self._headers)
        if entry is not None and entry.etag:
            headers["If-None-Match"] = entry.etag
        url = self._admin_url + path
        self.admin_lookups += 1
        try:
            response = await self._client().get(url, headers=headers, timeout=self._timeout)
        except httpx.HTTPError as exc:
            return self._outage(model, entry, f"{type(exc).__name__}: {exc}")
        status = response.status_code
        now = self._clock()
        if status == 304 and entry is not None and entry.route is not None:
            self._recovered(model, entry)
            entry.expires = now + self._ttl
            entry.fetched = now
            return entry.route
        if status == 200:
            try:
                route = parse_route(
                    response.json(), source="admin", default_ollama_url=self._default_url
                )
            except ValueError as exc:
                # The detail quotes the admin's answer: logged, never passed on to a caller.
                logger.warning("routing: malformed route for '%s' from the admin: %s", model, exc)
                return self._outage(model, entry, "a malformed route answer")
            if entry is not None:
                self._recovered(model, entry)
            self._entries[model] = _Entry(route, response.headers.get("etag"), now + self._ttl, now)
            return route
        if status == 404:
            # The admin's answer, not an outage: the model has no enabled entry.
            if self._use_default:
                if entry is None or entry.route is None or entry.route.source != "default":
                    logger.info(
                        "routing: no route for '%s' in the admin, using Ollama at %s",
                        model,
                        self._default_url,
                    )
                route = self.default_route(model)
                self._entries[model] = _Entry(route, None, now + self._ttl, now)
                return route
            self._entries[model] = _Entry(None, None, now + self._ttl, now)
            raise ModelNotConfigured(model)
        if status in (401, 403) and (entry is None or entry.route is None):
            raise RouteLookupError(
                f"the admin refused the route look-up for '{model}' (HTTP {status}): check ATHENA_SERVICE_KEY"
            )
        return self._outage(model, entry, f"HTTP {status}")

    def _outage(self, model: str, entry: _Entry | None, why: str) -> Route:
        now = self._clock()
        if entry is not None and entry.route is not None:
            if entry.stale_since is None:
                entry.stale_since = now
                logger.warning(
                    "routing: admin unavailable (%s); serving the last-known chain for '%s' until it is back",
                    why,
                    model,
                )
            entry.expires = now + self._outage_retry
            return entry.route
        if entry is not None:
            entry.expires = now + self._outage_retry
            raise ModelNotConfigured(model)
        if not self._use_default:
            raise RouteLookupError(
                f"the admin is unavailable ({why}) and no route for '{model}' is known"
            )
        logger.warning(
            "routing: admin unavailable (%s) and '%s' never seen; using Ollama at %s",
            why,
            model,
            self._default_url,
        )
        route = self.default_route(model)
        self._entries[model] = _Entry(route, None, now + self._outage_retry, now)
        return route

    def _recovered(self, model: str, entry: _Entry) -> None:
        if entry.stale_since is not None:
            logger.warning("routing: admin reachable again, refreshed the chain for '%s'", model)
            entry.stale_since = None

    async def fetch_all(self) -> list[Route]:
        """List every route: the routes file's, then the admin's (GET /api/routes)."""
        routes = list(self._file.values())
        if self._admin_url is None:
            return routes
        try:
            response = await self._client().get(
                f"{self._admin_url}/api/routes", headers=self._headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise RouteLookupError(f"cannot reach the admin at {self._admin_url}: {exc}") from exc
        if response.status_code != 200:
            raise RouteLookupError(f"GET /api/routes answered HTTP {response.status_code}")
        try:
            items = response.json()["routes"]
            routes.extend(
                parse_route(r, source="admin", default_ollama_url=self._default_url) for r in items
            )
        except (ValueError, KeyError, TypeError) as exc:
            # The detail quotes the admin's answer: logged, never passed on to a caller.
            logger.warning("routing: malformed answer from GET /api/routes: %s", exc)
            raise RouteLookupError("malformed answer from GET /api/routes") from exc
        return routes
