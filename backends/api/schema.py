"""Teach drf-spectacular how API keys are presented, so the schema documents them."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ServiceKeyScheme(OpenApiAuthenticationExtension):
    target_class = "backends.api.authentication.ServiceKeyAuthentication"
    name = ["apiKeyBearer", "apiKeyHeader"]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {"type": "http", "scheme": "bearer", "bearerFormat": "athk_..."},
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        ]
