"""MLX model server speaking the OpenAI and Ollama HTTP APIs."""

from .app import create_app
from .errors import APIError, ContextOverflow, InvalidRequest, ModelNotFound, Overloaded
from .settings import ServerSettings

__all__ = [
    "APIError",
    "ContextOverflow",
    "InvalidRequest",
    "ModelNotFound",
    "Overloaded",
    "ServerSettings",
    "create_app",
]
