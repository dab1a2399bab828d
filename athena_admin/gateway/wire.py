"""Encoding helpers shared by the protocol modules: request bodies, JSON, timestamps."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request

from athena_admin.gateway.errors import GatewayError, invalid

__all__ = ["compact", "go_json", "read_object", "rfc3339nano"]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def compact(obj: Any) -> str:
    """JSON with no spaces (what OpenAI's SSE chunks and Ollama's lines use)."""
    return _dumps(obj)


def go_json(obj: Any) -> str:
    """Encode like Go's json.Marshal (Ollama): compact, UTF-8, <, > and & escaped."""
    text = _dumps(obj)
    if "<" in text or ">" in text or "&" in text or "\u2028" in text or "\u2029" in text:
        text = (
            text.replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
            .replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029")
        )
    return text


def rfc3339nano(ns: int | None = None) -> str:
    """A UTC time as Go's time.RFC3339Nano writes it (Ollama's ``created_at``)."""
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    fraction = f"{frac:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


# Long chat histories fit easily; anything bigger is refused before it is read.
MAX_BODY_BYTES = 16 * 1024 * 1024


async def read_object(request: Request) -> dict[str, Any]:
    """Parse the body as a JSON object, or raise a 400 saying what is wrong."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise GatewayError(413, f"request body is over {MAX_BODY_BYTES} bytes")
    raw = await request.body()
    if not raw:
        raise GatewayError(400, "request body is empty; send a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "request body must be a JSON object")
    return body


def model_field(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None or model == "":
        raise invalid("model", "model is required")
    if not isinstance(model, str):
        raise invalid("model", f"model must be a string, got {type(model).__name__}")
    return model


def bool_field(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(name, f"{name} must be true or false, got {value!r}")
    return value


def int_field(obj: dict[str, Any], name: str, label: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(label, f"{label} must be an integer, got {value!r}")
    return value


def reject_if_set(body: dict[str, Any], names: tuple[str, ...], why: str) -> None:
    """400 for features the router cannot carry yet, rather than silently ignoring them."""
    for name in names:
        if body.get(name):
            raise invalid(name, f"{name} is not supported by the Athena gateway ({why})")
