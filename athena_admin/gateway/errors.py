"""Errors the gateway answers with, and how routing's exceptions map onto them.

Each protocol renders a GatewayError in its own shape (see ``ollama.py`` and ``openai.py``):
Ollama ``{"error": "..."}``, OpenAI ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

from routing import (
    AllTargetsFailed,
    InvalidRequest,
    ModelNotConfigured,
    RouteLookupError,
    RouterClosed,
    RoutingError,
    StreamInterrupted,
    UpstreamStatusError,
)

__all__ = ["GatewayError", "all_failed_status", "from_routing_error"]


class GatewayError(Exception):
    """An answer other than 2xx: HTTP status, message, and the OpenAI error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        # OpenAI's `type`: what api.openai.com sends for the status.
        self.kind = kind or (
            "invalid_request_error"
            if status < 500 and status != 401
            else "authentication_error"
            if status == 401
            else "server_error"
        )


def invalid(field: str, message: str) -> GatewayError:
    """A 400 naming the request field at fault."""
    return GatewayError(400, message, param=field, code="invalid_value")


# Targets skipped for an open circuit breaker are "down" by the router's own reckoning.
_UNREACHABLE = frozenset({"connect", "circuit_open"})
_TIMED_OUT = frozenset({"timeout", "circuit_open"})


def all_failed_status(exc: AllTargetsFailed) -> int:
    """503 when no target could be reached, 504 when they all timed out, 502 otherwise.

    As a proxy answers (RFC 9110 15.6.3-15.6.5): 503, nothing is serving the model right now;
    504, the upstreams are there but too slow; 502, an upstream answered badly (5xx, 429,
    a broken answer) or the failures were mixed.
    """
    kinds = {f.kind for f in exc.failures}
    if kinds and kinds <= _UNREACHABLE:
        return 503
    if "timeout" in kinds and kinds <= _TIMED_OUT:
        return 504
    return 502


def from_routing_error(
    exc: RoutingError, *, field_names: dict[str, str], available: list[str] | None
) -> GatewayError:
    """Translate a routing exception raised before any content was sent.

    ``field_names`` maps routing's argument names to the client protocol's field names, so a
    400 names the field the client sent (``options.temperature``, not ``temperature``).
    ``available`` lists the models for a 404 (None when the list could not be fetched).
    """
    if isinstance(exc, InvalidRequest):
        text = str(exc)
        first = text.split(" ", 1)[0]
        name = first.split("[", 1)[0].split(".", 1)[0]
        client_name = field_names.get(name, name)
        return invalid(client_name, client_name + text[len(name) :])
    if isinstance(exc, ModelNotConfigured):
        listing = ", ".join(available) if available else "(none)"
        if available is None:
            listing = "(the model list is unavailable)"
        return GatewayError(
            404,
            f"model '{exc.model}' not found; available models: {listing}",
            param="model",
            code="model_not_found",
        )
    if isinstance(exc, AllTargetsFailed):
        return GatewayError(all_failed_status(exc), str(exc), code="all_targets_failed")
    if isinstance(exc, UpstreamStatusError):
        # A 4xx the upstream says is the request's fault: every target would refuse it alike.
        target = exc.target
        where = f"{target.backend_type} {target.endpoint_url}" if target else "upstream"
        return GatewayError(
            exc.status_code or 502, f"{where} refused the request: {exc.backend_message}"
        )
    if isinstance(exc, RouteLookupError):
        return GatewayError(503, str(exc), code="route_lookup_failed")
    if isinstance(exc, RouterClosed):
        return GatewayError(503, "the gateway is shutting down", code="shutting_down")
    if isinstance(exc, StreamInterrupted):
        return GatewayError(502, str(exc), code="stream_interrupted")
    return GatewayError(502, str(exc))
