"""Teach drf-spectacular how API keys are presented and which errors each operation gives."""

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ServiceKeyScheme(OpenApiAuthenticationExtension):
    target_class = "backends.api.authentication.ServiceKeyAuthentication"
    name = ["apiKeyBearer", "apiKeyHeader"]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {"type": "http", "scheme": "bearer", "bearerFormat": "athk_..."},
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        ]


class ErrorSerializer(serializers.Serializer):
    """The API's one error shape; a 400 also carries each failing field's messages."""

    detail = serializers.CharField(help_text="What went wrong, naming the field.")


# The error answers an operation can give, by kind of operation, with their meaning.
_ERRORS = {
    "400": "The body is invalid; `detail` names the first failing field.",
    "401": "No credentials, or an invalid or revoked API key.",
    "403": "Signed in, but without the permission this operation needs.",
    "404": "Nothing matches the path.",
    "413": "The body is larger than ATHENA_MAX_BODY_BYTES.",
    "415": "The body's content type is not JSON or a form.",
}


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's schema, plus the error responses each operation can give."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        codes = ["401", "403"]
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["400", "413", "415"]
        if "{" in self.path:
            codes.append("404")
        for code in sorted(codes):
            if code not in responses:
                described = OpenApiResponse(ErrorSerializer, description=_ERRORS[code])
                responses[code] = self._get_response_for_code(described, code, direction=direction)
        return responses
