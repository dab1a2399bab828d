"""A tiny backend for probe tests: answers the probe paths of all three kinds, with knobs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route


@dataclass
class Knobs:
    """What the next probe answers look like; mutate from a test."""

    status: int = 200
    delay: float = 0.0
    models: tuple[str, ...] = ("phi3:mini",)
    loaded: tuple[str, ...] = ()
    redirect_to: str | None = None
    body: str = "secret internal stack trace"  # the body of an error answer
    requests: list[str] = field(default_factory=list)
    broken: dict[str, int] = field(default_factory=dict)  # path -> the status it answers
    client_ports: list[int] = field(default_factory=list)  # one per request: its connection
    in_flight: int = 0
    max_in_flight: int = 0


def probe_app(knobs: Knobs) -> Starlette:
    async def answer(request: Request, payload: object) -> Response:
        knobs.requests.append(request.url.path)
        if request.client is not None:
            knobs.client_ports.append(request.client.port)
        knobs.in_flight += 1
        knobs.max_in_flight = max(knobs.max_in_flight, knobs.in_flight)
        try:
            if knobs.delay:
                await asyncio.sleep(knobs.delay)
            if knobs.redirect_to:
                return RedirectResponse(knobs.redirect_to, status_code=302)
            status = knobs.broken.get(request.url.path, knobs.status)
            if status != 200:
                return Response(knobs.body, status_code=status)
            return JSONResponse(payload)
        finally:
            knobs.in_flight -= 1

    async def tags(request: Request) -> Response:  # Ollama
        return await answer(request, {"models": [{"name": m} for m in knobs.models]})

    async def version(request: Request) -> Response:  # Ollama
        return await answer(request, {"version": "0.6.3"})

    async def ps(request: Request) -> Response:  # Ollama
        return await answer(request, {"models": [{"name": m} for m in knobs.loaded]})

    async def models(request: Request) -> Response:  # OpenAI-compatible
        return await answer(request, {"object": "list", "data": [{"id": m} for m in knobs.models]})

    async def health(request: Request) -> Response:  # mlx_server
        body = {"status": "ok", "models_available": list(knobs.models)}
        return await answer(request, {**body, "models_loaded": list(knobs.loaded)})

    return Starlette(
        routes=[
            Route("/api/version", version),
            Route("/api/tags", tags),
            Route("/api/ps", ps),
            Route("/v1/models", models),
            Route("/health", health),
        ]
    )
