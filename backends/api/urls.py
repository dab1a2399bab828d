from django.urls import path, re_path

from backends.api import comparisons, views

# The plan's paths, without trailing slashes. <path:...> lets model names contain "/".
urlpatterns = [
    path("llm-backends", views.BackendListCreate.as_view(), name="backend-list"),
    path("llm-backends/<int:pk>", views.BackendDetail.as_view(), name="backend-detail"),
    path(
        "llm-backends/model/<path:model_name>",
        views.BackendByModel.as_view(),
        name="backend-by-model",
    ),
    path("route/<path:model_name>", views.RouteDetail.as_view(), name="route-detail"),
    path("routes", views.RouteList.as_view(), name="route-list"),
    path("metrics/samples", views.SampleIngest.as_view(), name="sample-ingest"),
    path("comparisons", comparisons.ComparisonListStart.as_view(), name="comparison-list"),
    path(
        "comparisons/<int:run_id>",
        comparisons.ComparisonDetail.as_view(),
        name="comparison-detail",
    ),
    path(
        "comparisons/<int:run_id>/cancel",
        comparisons.ComparisonCancel.as_view(),
        name="comparison-cancel",
    ),
    # Anything else under /api/ answers in the API's JSON shape, not Django's HTML page.
    re_path(r"", views.api_not_found, name="api-not-found"),
]
