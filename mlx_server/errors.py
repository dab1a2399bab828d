"""The one exception hierarchy of the MLX server.

Every failure a client can cause or observe is an `APIError`; the routes turn it into
the wire shape of their protocol (OpenAI's `{"error": {...}}` or Ollama's
`{"error": "..."}`), so handlers raise and never build error bodies themselves.
"""

from __future__ import annotations


class APIError(Exception):
    """A failure answered to the client with an HTTP status."""

    status = 500
    type = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


class InvalidRequest(APIError):
    """The request body is malformed or a field is out of range."""

    status = 400
    type = "invalid_request_error"


class ContextOverflow(InvalidRequest):
    """The prompt (plus what it asks to generate) does not fit the model's context."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message, param=param, code="context_length_exceeded")


class ModelNotFound(APIError):
    """The requested model is neither a known folder name nor an alias."""

    status = 404
    type = "invalid_request_error"

    def __init__(self, name: str, available: list[str]) -> None:
        listing = ", ".join(available) if available else "(none)"
        super().__init__(
            f"model '{name}' not found; available models: {listing}",
            param="model",
            code="model_not_found",
        )
        self.available = available


class Overloaded(APIError):
    """The model's queue is full; the client should retry later."""

    status = 503
    type = "server_overloaded"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, code="overloaded", headers={"Retry-After": str(retry_after_s)})


class UnsupportedModel(InvalidRequest):
    """The folder holds a model mlx-lm cannot run (e.g. a dedicated embedding model)."""

    def __init__(self, name: str, model_type: object) -> None:
        super().__init__(
            f"model '{name}' has model_type {model_type!r}, which mlx-lm cannot run; "
            "this server serves mlx-lm language models only (dedicated embedding models such "
            "as BERT are not supported: docs/mlx_server.md)",
            param="model",
            code="model_not_supported",
        )


class ModelLoadFailed(APIError):
    """The model's files exist but mlx-lm could not load them."""

    status = 500
    type = "server_error"


class GenerationFailed(APIError):
    """The engine raised while decoding this request."""

    status = 500
    type = "server_error"


class ClientGone(Exception):
    """The client disconnected before the answer was ready; nothing is sent."""
