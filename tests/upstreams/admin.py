"""A stand-in for the admin's service API (docs/architecture.md) that records every request.

GET /api/route/<model> (ETag, If-None-Match -> 304, 404 detail), GET /api/routes and
POST /api/metrics/samples (de-duplicated by sample id, 202 {"accepted", "duplicates"}).
Until the Django endpoints exist this is what the router's admin client is tested against;
the integration tests in tests/routing/test_admin_integration.py use the real admin.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["AdminStandIn", "admin_app"]


@dataclass
class AdminStandIn:
    """The admin's state and knobs, shared with the test."""

    routes: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> route JSON
    service_key: str | None = None  # if set, requests without it get 401
    status: int | None = None  # if set, every request gets this status (e.g. 503: down)
    delay: float = 0.0
    lookups: list[tuple[str, str | None]] = field(default_factory=list)  # (model, If-None-Match)
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> sample
    sample_posts: int = 0

    def set_route(self, model: str, *targets: dict[str, Any]) -> None:
        self.routes[model] = {"model": model, "targets": list(targets)}


def _etag(route: dict[str, Any]) -> str:
    return '"' + hashlib.sha256(json.dumps(route, sort_keys=True).encode()).hexdigest()[:16] + '"'


def admin_app(state: AdminStandIn | None = None) -> tuple[Starlette, AdminStandIn]:
    s = state if state is not None else AdminStandIn()

    def refused(request: Request) -> Response | None:
        if s.status is not None:
            return JSONResponse({"detail": "unavailable"}, status_code=s.status)
        if s.service_key is not None:
            auth = request.headers.get("authorization", "")
            key = auth[7:] if auth.startswith("Bearer ") else request.headers.get("x-api-key")
            if key != s.service_key:
                return JSONResponse(
                    {"detail": "Authentication credentials were not provided."}, status_code=401
                )
        return None

    async def route(request: Request) -> Response:
        model = request.path_params["model"]
        s.lookups.append((model, request.headers.get("if-none-match")))
        if s.delay:
            await asyncio.sleep(s.delay)
        if (answer := refused(request)) is not None:
            return answer
        body = s.routes.get(model)
        if body is None:
            return JSONResponse(
                {"detail": f"No backend configured for model '{model}'"}, status_code=404
            )
        etag = _etag(body)
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return JSONResponse(body, headers={"ETag": etag})

    async def routes(request: Request) -> Response:
        if (answer := refused(request)) is not None:
            return answer
        return JSONResponse({"routes": list(s.routes.values())})

    async def samples(request: Request) -> Response:
        if s.delay:
            await asyncio.sleep(s.delay)
        if (answer := refused(request)) is not None:
            return answer
        s.sample_posts += 1
        batch = (await request.json())["samples"]
        if len(batch) > 1000:
            return JSONResponse({"detail": "at most 1000 samples"}, status_code=400)
        accepted = duplicates = 0
        for sample in batch:
            if sample["id"] in s.samples:
                duplicates += 1
            else:
                s.samples[sample["id"]] = sample
                accepted += 1
        return JSONResponse({"accepted": accepted, "duplicates": duplicates}, status_code=202)

    app = Starlette(
        routes=[
            Route("/api/route/{model:path}", route, methods=["GET"]),
            Route("/api/routes", routes, methods=["GET"]),
            Route("/api/metrics/samples", samples, methods=["POST"]),
        ]
    )
    return app, s
