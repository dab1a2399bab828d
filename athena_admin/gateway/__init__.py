"""Athena's gateway: one Ollama- and OpenAI-compatible endpoint that routes per the registry.

    python -m athena_admin.gateway [--host 127.0.0.1] [--port 11400]

or, embedded: ``create_app(GatewayConfig(...))`` is an ASGI app (docs/gateway.md).
"""

from athena_admin.gateway.app import Gateway, GatewayApp, create_app
from athena_admin.gateway.auth import Principal
from athena_admin.gateway.config import BearerAuthenticator, GatewayConfig

__all__ = [
    "BearerAuthenticator",
    "Gateway",
    "GatewayApp",
    "GatewayConfig",
    "Principal",
    "create_app",
]
