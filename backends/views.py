"""The operator's dashboard page, served inside the admin site."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse

from backends.dashboard import dashboard


def dashboard_view(request: HttpRequest) -> TemplateResponse:
    """Every chain at a glance with its last 24 hours; for anyone who may view backends."""
    if not request.user.has_perm("backends.view_llmbackend"):
        raise PermissionDenied
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "board": dashboard(),
    }
    return TemplateResponse(request, "admin/backends/dashboard.html", context)
