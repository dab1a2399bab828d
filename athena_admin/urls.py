from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from athena_admin.health import health
from athena_admin.identity import views as identity_views
from athena_admin.metrics import metrics
from backends.api.docs import RedocView, SwaggerView
from backends.views import dashboard_view

admin.site.site_header = "Athena"
admin.site.site_title = "Athena admin"
admin.site.index_title = "LLM routing: registry and operations"


class FaviconRedirect(RedirectView):
    """Browsers ask for /favicon.ico on pages that name no icon (the API's JSON, /health)."""

    permanent = True

    def get_redirect_url(self, *args: object, **kwargs: object) -> str:
        return static("athena/favicon.svg")


urlpatterns = [
    path("favicon.ico", FaviconRedirect.as_view(), name="favicon"),
    path("health", health, name="health"),
    path("metrics", metrics, name="metrics"),
    # Before the api/ include: its catch-all JSON 404 would otherwise swallow these three.
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc", RedocView.as_view(url_name="schema"), name="api-redoc"),
    path("api/", include("backends.api.urls")),
    # Identity (docs/identity.md): the admin login with its SSO button and rate limit,
    # the relying party's callback, and Athena's own provider. The wrappers come first so
    # they win over the paths the included URLconfs define.
    path("admin/login/", identity_views.admin_login, name="athena-admin-login"),
    path("admin/dashboard/", admin.site.admin_view(dashboard_view), name="athena-dashboard"),
    path("admin/", admin.site.urls),
    path("oidc/", include("mozilla_django_oidc.urls")),
    path("accounts/login/", identity_views.ProviderLoginView.as_view(), name="login"),
    re_path(r"^openid/token/?$", identity_views.token, name="oidc-token"),
    re_path(r"^openid/userinfo/?$", identity_views.userinfo, name="oidc-userinfo"),
    path("openid/", include("oidc_provider.urls", namespace="oidc_provider")),
]
