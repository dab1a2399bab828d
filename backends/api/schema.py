"""Teach drf-spectacular how API keys are presented and which errors each operation gives."""

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from backends.models import validate_model_name

# backends.models.MODEL_NAME_RE and its "no '..', no trailing '/'" rules as one ECMA regex
# without look-arounds: alphanumeric first, then characters where dots and slashes never
# come twice in a row, ending in anything but a slash.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9](?:\.?(?:/\.)*/?[A-Za-z0-9:_-])*\.?(?:/\.)*$"


class ServiceKeyScheme(OpenApiAuthenticationExtension):
    target_class = "backends.api.authentication.ServiceKeyAuthentication"
    name = ["apiKeyBearer", "apiKeyHeader"]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        # Either presentation is enough: two requirements (OR), not one requiring both (AND).
        return [{name: []} for name in self.name]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {"type": "http", "scheme": "bearer", "bearerFormat": "athk_..."},
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        ]


class ErrorSerializer(serializers.Serializer):
    """The API's one error shape; a 400 also carries each failing field's messages."""

    detail = serializers.CharField(help_text="What went wrong, naming the field.")


_NOT_BLANK_PATTERN = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"

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

    def _map_serializer_field(
        self, field: Any, direction: Any, bypass_extensions: bool = False
    ) -> Any:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if isinstance(field, serializers.ListSerializer):
            # drf-spectacular drops a nested list's bounds; the API enforces them.
            if field.min_length is not None or not field.allow_empty:
                schema["minItems"] = max(field.min_length or 0, 0 if field.allow_empty else 1)
            if field.max_length is not None:
                schema["maxItems"] = field.max_length
        if (
            isinstance(field, serializers.CharField)
            and not field.read_only
            and not field.allow_blank
            and "minLength" not in schema
        ):
            schema["minLength"] = 1  # DRF refuses "" unless allow_blank
        if (
            isinstance(field, serializers.CharField)
            and not field.read_only
            and not field.allow_blank
            and field.trim_whitespace
        ):
            # DRF refuses NUL characters and a value that is blank once trimmed; the
            # model-name pattern already implies both.
            schema.setdefault("pattern", _NOT_BLANK_PATTERN)
        if validate_model_name in getattr(field, "validators", []):
            blank = getattr(field, "allow_blank", False)
            schema["pattern"] = (
                f"^(?:{MODEL_NAME_PATTERN[1:-1]})?$" if blank else MODEL_NAME_PATTERN
            )
        return schema

    def map_parsers(self) -> list[Any]:
        # Bodies are JSON objects. The form parsers exist so `curl -d '{...}'` works as
        # written; a form's fields are untyped strings, so they are not part of the contract.
        parsers = super().map_parsers()
        return ["application/json"] if "application/json" in parsers else parsers

    def _resolve_path_parameters(self, variables: Any) -> list[dict[str, Any]]:
        parameters = super()._resolve_path_parameters(variables)
        for parameter in parameters:
            if parameter["name"] == "model_name":
                parameter["schema"]["pattern"] = MODEL_NAME_PATTERN
        return parameters
