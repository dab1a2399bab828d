"""Request-body helpers and error bodies shared by the OpenAI and Ollama routes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from .errors import APIError, InvalidRequest


async def read_json(request: Request) -> dict[str, Any]:
    """Parse the body as a JSON object or raise InvalidRequest."""
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


def required_str(body: dict[str, Any], key: str, param: str | None = None) -> str:
    """Read a non-empty string field."""
    param = param or key
    value = body.get(key)
    if value is None or value == "":
        raise InvalidRequest(f"'{param}' is required", param=param)
    if not isinstance(value, str):
        raise InvalidRequest(f"'{param}' must be a string", param=param)
    return value


def optional_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    """Read a boolean field."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{key}' must be true or false", param=key)
    return value


def optional_dict(body: dict[str, Any], key: str) -> dict[str, Any]:
    """Read an object field, {} when absent."""
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{key}' must be an object", param=key)
    return value


def reject_unsupported(body: dict[str, Any], fields: tuple[str, ...], prefix: str = "") -> None:
    """Answer 400 for features this server does not implement, rather than ignore them."""
    for name in fields:
        value = body.get(name)
        if value not in (None, False, "", [], {}):
            param = f"{prefix}{name}"
            raise InvalidRequest(f"'{param}' is not supported by this server", param=param)


def openai_error(exc: APIError) -> JSONResponse:
    """Render an error in OpenAI's shape: {"error": {message, type, param, code}}."""
    return JSONResponse(
        {"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}},
        status_code=exc.status,
        headers=exc.headers,
    )


def ollama_error(exc: APIError) -> JSONResponse:
    """Render an error in Ollama's shape: {"error": "..."}."""
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)


class ClosingStream(StreamingResponse):
    """A streaming response that runs `on_close` however the stream ends.

    Starlette cancels the body iterator when the client disconnects; if that happens
    before the first chunk, the iterator's own `finally` never runs.
    """

    def __init__(self, content: Any, *, on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
