from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from athena_admin.health import health

urlpatterns = [
    path("health", health, name="health"),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("backends.api.urls")),  # last: it answers unknown /api/ paths
    path("admin/", admin.site.urls),
]
