"""Teach drf-spectacular how OIDC access tokens are presented."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class AthenaTokenScheme(OpenApiAuthenticationExtension):
    target_class = "athena_admin.identity.drf.AthenaTokenAuthentication"
    name = "athenaAccessToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An access token from Athena's /openid/token with the scope "
            "athena.api (ATHENA_API_SCOPE), from a client allowed it. Never in the query string.",
        }


class ProviderTokenScheme(OpenApiAuthenticationExtension):
    target_class = "athena_admin.identity.drf.ProviderTokenAuthentication"
    name = "providerAccessToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An access token from the configured external OIDC provider, "
            "issued for Athena (its audience, or the scope athena.api).",
        }


class RateLimitedBasicScheme(OpenApiAuthenticationExtension):
    target_class = "athena_admin.identity.drf.RateLimitedBasicAuthentication"
    name = "basicAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "basic",
            "description": "Username and password; failures are limited like login attempts "
            "(429 with Retry-After).",
        }
