"""The API's documentation pages: Swagger UI and ReDoc, for whoever may read the API.

A person who opens them signed out is sent to the admin's login and back, instead of the
API's JSON 401 (the pages are for browsers; the schema itself keeps the API's answers).
"""

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.urls import reverse
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView
from rest_framework.exceptions import NotAuthenticated


class _SignInFirst:
    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, NotAuthenticated):
            request = self.request  # type: ignore[attr-defined]
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        return super().handle_exception(exc)  # type: ignore[misc]


class SwaggerView(_SignInFirst, SpectacularSwaggerView):
    """Swagger UI from drf-spectacular-sidecar's static files."""


class RedocView(_SignInFirst, SpectacularRedocView):
    """ReDoc from drf-spectacular-sidecar's static files (templates/drf_spectacular/redoc.html)."""
