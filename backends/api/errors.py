"""One error shape for the API: `detail` always says what went wrong, naming the field."""

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from backends.services import DuplicateModel


def _first_message(errors: Any, path: str = "") -> str:
    if isinstance(errors, dict):
        for field, value in errors.items():
            name = (
                path
                if field in ("non_field_errors", "__all__")
                else (f"{path}.{field}" if path else str(field))
            )
            return _first_message(value, name)
    if isinstance(errors, list) and errors:
        return _first_message(errors[0], path)
    return f"{path}: {errors}" if path else str(errors)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DuplicateModel):
        return Response({"detail": str(exc), "model_name": [str(exc)]}, status=400)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": "Request body too large."}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
        )
    if isinstance(exc, DjangoValidationError):
        exc = ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, ValidationError):
        errors = response.data
        body = dict(errors) if isinstance(errors, dict) else {"non_field_errors": errors}
        body["detail"] = _first_message(errors)
        response.data = body
    return response
