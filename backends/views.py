"""The operator's dashboard page, served inside the admin site."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.template.response import TemplateResponse

from backends.dashboard import DEFAULT_RANGE, RANGES, dashboard


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """Every chain at a glance over a time range; for anyone who may view backends."""
    if not request.user.has_perm("backends.view_llmbackend"):
        raise PermissionDenied
    time_range = request.GET.get("range", DEFAULT_RANGE)
    if time_range not in RANGES:
        return HttpResponseBadRequest(
            f"range: choose one of {', '.join(RANGES)}.", content_type="text/plain"
        )
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "board": dashboard(time_range=time_range),
    }
    return TemplateResponse(request, "admin/backends/dashboard.html", context)
