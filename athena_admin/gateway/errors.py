"""Errors the gateway answers with, and how routing's exceptions map onto them.

Each protocol renders a GatewayError in its own shape (see ``ollama.py`` and ``openai.py``):
Ollama ``{"error": "..."}``, OpenAI ``{"error": {"message", "type", "param", "code"}}``.

Who reads the details: internal endpoint URLs and an upstream's own error text are shown to
operators only (``Principal.operator``); everyone else reads the target by model name and
backend type (docs/gateway.md, "Errors").
"""

from __future__ import annotations

import math

from routing import (
    AllTargetsFailed,
    InvalidRequest,
    ModelNotConfigured,
    RouteLookupError,
    RouterClosed,
    RoutingError,
    StreamInterrupted,
    Target,
    TargetFailure,
    UpstreamError,
    UpstreamStatusError,
)

__all__ = [
    "LOOP_DETECTED",
    "GatewayError",
    "all_failed_status",
    "from_routing_error",
    "internal_error",
    "invalid",
]

# RFC 5842 7.2: the request went round a loop of gateways (docs/gateway.md, "Hops").
LOOP_DETECTED = 508


class GatewayError(Exception):
    """An answer other than 2xx: HTTP status, message, and the OpenAI error fields.

    ``overloaded``: every target is at capacity; Ollama clients get 503, OpenAI clients 429
    (the status their SDKs retry), both with ``Retry-After: retry_after``.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str | None = None,
        retry_after: int | None = None,
        overloaded: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after
        self.overloaded = overloaded
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


def internal_error() -> GatewayError:
    """What a client reads when the gateway itself failed: no detail (it is in the log)."""
    return GatewayError(
        500,
        "internal error in the Athena gateway; its log has the details (see X-Request-ID)",
        code="internal_error",
    )


# Targets skipped for an open circuit breaker are "down" by the router's own reckoning.
_UNREACHABLE = frozenset({"connect", "circuit_open"})
_TIMED_OUT = frozenset({"timeout", "circuit_open"})


def all_failed_status(exc: AllTargetsFailed) -> int:
    """503 when no target could be reached, 504 when they all timed out, 502 otherwise.

    As a proxy answers (RFC 9110 15.6.3-15.6.5): 503, nothing is serving the model right now;
    504, the upstreams are there but too slow; 502, an upstream answered badly (5xx, a broken
    answer) or the failures were mixed. Every target at capacity is 503 too (overloaded);
    every target answering 508 passes the loop on (508).
    """
    if exc.overloaded:
        return 503
    kinds = {f.kind for f in exc.failures}
    if kinds and kinds <= _UNREACHABLE:
        return 503
    if "timeout" in kinds and kinds <= _TIMED_OUT:
        return 504
    statuses = {f.error.status_code if f.error is not None else None for f in exc.failures}
    if statuses == {LOOP_DETECTED}:
        return LOOP_DETECTED
    return 502


# What a failure kind (TargetFailure.kind) says to a client who may not read its detail.
_PLAIN_REASONS = {
    "connect": "unreachable",
    "timeout": "timed out",
    "protocol": "malformed or cut-short answer",
    "http_429": "at capacity",
    "overload": "at capacity",
    "circuit_open": "skipped: circuit open after repeated failures",
    "unknown_backend": "unknown backend type",
}


def _plain_target(target: Target | None, model: str) -> str:
    if target is None:
        return f"a backend of model '{model}'"
    return f"{target.model_name or model} ({target.backend_type})"


def _plain_reason(failure: TargetFailure) -> str:
    reason = _PLAIN_REASONS.get(failure.kind)
    if reason is not None:
        return reason
    status = failure.error.status_code if failure.error is not None else None
    return f"HTTP {status}" if status else failure.kind


def _all_failed_message(exc: AllTargetsFailed, operator: bool) -> str:
    if operator:
        return str(exc)
    lines = [
        f"  {i}. {_plain_target(f.target, exc.model)}: {_plain_reason(f)}"
        for i, f in enumerate(exc.failures, 1)
    ]
    return f"all {len(exc.failures)} targets failed for model '{exc.model}':\n" + "\n".join(lines)


def _upstream_plain(exc: UpstreamError, model: str) -> str:
    target = _plain_target(exc.target, model)
    if exc.status_code is not None:
        return f"{target}: HTTP {exc.status_code}"
    return f"{target}: {_PLAIN_REASONS.get(exc.error_kind, exc.error_kind)}"


def from_routing_error(
    exc: RoutingError,
    *,
    field_names: dict[str, str],
    available: list[str] | None,
    operator: bool,
    model: str = "",
) -> GatewayError:
    """Translate a routing exception raised before any content was sent.

    ``field_names`` maps routing's argument names to the client protocol's field names, so a
    400 names the field the client sent (``options.temperature``, not ``temperature``).
    ``available`` lists the models for a 404 (None when the list could not be fetched).
    ``operator``: the caller may read endpoint URLs and upstreams' own error text.
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
        message = _all_failed_message(exc, operator)
        if exc.overloaded:
            wait = exc.retry_after
            return GatewayError(
                503,
                message,
                code="rate_limit_exceeded",
                kind="requests",  # what api.openai.com sends with its 429s
                retry_after=max(1, math.ceil(wait)) if wait is not None else 1,
                overloaded=True,
            )
        status = all_failed_status(exc)
        if status == LOOP_DETECTED:
            message = (
                f"loop detected: model '{exc.model}' is routed back through an Athena gateway "
                "(X-Athena-Hops); an endpoint of its entries points at a gateway"
            )
            return GatewayError(status, message, code="loop_detected")
        return GatewayError(status, message, code="all_targets_failed")
    if isinstance(exc, UpstreamStatusError):
        # A 4xx the upstream says is the request's fault: every target would refuse it alike.
        if operator:
            target = exc.target
            where = f"{target.backend_type} {target.endpoint_url}" if target else "upstream"
            message = f"{where} refused the request: {exc.backend_message}"
        else:
            message = f"the request was refused: {_upstream_plain(exc, model)}"
        return GatewayError(exc.status_code or 502, message)
    if isinstance(exc, RouteLookupError):
        message = str(exc) if operator else "the model registry could not be asked for the route"
        return GatewayError(503, message, code="route_lookup_failed")
    if isinstance(exc, RouterClosed):
        return GatewayError(503, "the gateway is shutting down", code="shutting_down")
    if isinstance(exc, StreamInterrupted):
        if operator:
            message = str(exc)
        else:
            message = (
                f"stream interrupted after {exc.chars_sent} characters, no fallback possible: "
                + _upstream_plain(exc.cause, model)
            )
        return GatewayError(502, message, code="stream_interrupted")
    if isinstance(exc, UpstreamError):
        return GatewayError(502, str(exc) if operator else _upstream_plain(exc, model))
    return GatewayError(502, str(exc) if operator else "the request could not be routed")
