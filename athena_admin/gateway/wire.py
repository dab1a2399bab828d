"""Encoding helpers shared by the protocol modules: request bodies, JSON, timestamps."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import Receive, Scope

from athena_admin.gateway.errors import GatewayError, invalid
from routing import MAX_MODEL_NAME

__all__ = ["ClientDisconnected", "compact", "go_json", "read_object", "rfc3339nano"]


# json.dumps with these arguments makes an encoder per call; one made once is 10x cheaper.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def compact(obj: Any) -> str:
    """JSON with no spaces (what OpenAI's SSE chunks and Ollama's lines use)."""
    return _encode(obj)


def go_json(obj: Any) -> str:
    """Encode like Go's json.Marshal (Ollama): compact, UTF-8, <, > and & escaped."""
    text = compact(obj)
    if "<" in text or ">" in text or "&" in text or "\u2028" in text or "\u2029" in text:
        text = (
            text.replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
            .replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029")
        )
    return text


# (second, "YYYY-MM-DDTHH:MM:SS") of the last timestamp: a stream stamps every chunk, and
# formatting the date part costs more than the rest, once per second is enough.
_last_second: tuple[int, str] = (-1, "")


def rfc3339nano(ns: int | None = None) -> str:
    """A UTC time as Go's time.RFC3339Nano writes it (Ollama's ``created_at``)."""
    global _last_second
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    second, base = _last_second
    if second != secs:
        base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        _last_second = (secs, base)
    if not frac:
        return base + "Z"
    return base + "." + f"{frac:09d}".rstrip("0") + "Z"


# Long chat histories fit easily; anything bigger is refused before it is read.
MAX_BODY_BYTES = 16 * 1024 * 1024


class ClientDisconnected(Exception):
    """The client hung up before its request body arrived: there is no one to answer."""


async def read_object(scope: Scope, receive: Receive) -> dict[str, Any]:
    """Read the body (raw ASGI) and parse it as a JSON object, or raise a 400 saying why."""
    return parse_object(await _read_body(scope, receive))


def parse_object(raw: bytes) -> dict[str, Any]:
    """Parse a request body as a JSON object whose strings are valid Unicode, or raise a 400."""
    if not raw:
        raise GatewayError(400, "request body is empty; send a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayError(400, f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        # json's C parser recurses per level: 100k `[` ran out of stack (was a plain 500).
        raise GatewayError(400, "request body is not valid JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "request body must be a JSON object")
    # JSON may spell a lone UTF-16 surrogate (RFC 8259 section 8.2 leaves it undefined);
    # Python keeps it in the str, and it cannot be encoded to send upstream. Only a body with
    # a \u escape in the surrogate range (D800-DFFF) can hold one: check those alone.
    if b"\\ud" in raw or b"\\uD" in raw:
        field = _lone_surrogate_field(body)
        if field is not None:
            top = field.split("[", 1)[0].split(".", 1)[0]
            raise invalid(top, f"{field} holds a lone UTF-16 surrogate; send valid Unicode")
    return body


def _lone_surrogate_field(body: dict[str, Any]) -> str | None:
    """Name the first field (``messages[0].content``) whose key or text is not valid Unicode.

    Iterative: a body may nest as deep as the JSON parser allowed.
    """
    pending: list[tuple[str, Any]] = [("", body)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{path}.{key}" if path else str(key)
                if not _encodable(key):
                    return path or "body"
                pending.append((name, item))
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _too_large() -> GatewayError:
    return GatewayError(413, f"request body is over {MAX_BODY_BYTES} bytes")


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
            raise _too_large()  # refused before it is read
    first = await receive()
    if first["type"] == "http.disconnect":
        raise ClientDisconnected
    body: bytes = first.get("body", b"")
    if not first.get("more_body", False):
        return body  # the usual case: the whole body in one message
    parts = [body]
    size = len(body)
    # A chunked body declares no length: count as it comes.
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def model_field(body: dict[str, Any], name: str = "model") -> str:
    model = body.get(name)
    if model is None or model == "":
        raise invalid("model", "model is required")
    if not isinstance(model, str):
        raise invalid("model", f"model must be a string, got {type(model).__name__}")
    if len(model) > MAX_MODEL_NAME:
        raise invalid(
            "model", f"model must be at most {MAX_MODEL_NAME} characters, got {len(model)}"
        )
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
