"""The registry API: validate, call one service or selector, serialize."""

import logging
from collections.abc import Callable
from typing import Any

from django.db.models import Prefetch
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from athena_admin.counters import SAMPLES_REJECTED
from backends import selectors, services
from backends.api.permissions import require
from backends.api.serializers import (
    IngestResultSerializer,
    LLMBackendSerializer,
    RouteListSerializer,
    RouteSerializer,
    SampleBatchSerializer,
    SampleEnvelopeSerializer,
    samples_split,
)
from backends.models import FallbackLink, LLMBackend

logger = logging.getLogger(__name__)


def _registry() -> Any:
    links = FallbackLink.objects.select_related("fallback").order_by("position")
    return LLMBackend.objects.select_related("created_by").prefetch_related(
        Prefetch("fallback_links", queryset=links)
    )


def _split(data: dict[str, Any]) -> tuple[dict[str, Any], list[str] | None]:
    fields = dict(data)
    return fields, fields.pop("fallbacks", None)


class BackendListCreate(generics.ListCreateAPIView):
    """List every backend entry, or create one."""

    serializer_class = LLMBackendSerializer
    pagination_class = None

    def get_queryset(self) -> Any:
        return _registry()

    def perform_create(self, serializer: LLMBackendSerializer) -> None:
        fields, fallbacks = _split(serializer.validated_data)
        serializer.instance = services.backend_create(
            fields=fields, fallbacks=fallbacks, user=self.request.user
        )


class BackendDetail(generics.RetrieveUpdateDestroyAPIView):
    """Read, replace, patch or delete one backend entry."""

    serializer_class = LLMBackendSerializer

    def get_queryset(self) -> Any:
        return _registry()

    def perform_update(self, serializer: LLMBackendSerializer) -> None:
        fields, fallbacks = _split(serializer.validated_data)
        serializer.instance = services.backend_update(
            entry=serializer.instance, fields=fields, fallbacks=fallbacks
        )
        # Re-read so the response shows the chain just written, not the prefetched one.
        serializer.instance = _registry().get(pk=serializer.instance.pk)


class BackendByModel(generics.RetrieveAPIView):
    """The enabled entry for a model name (the plan's look-up)."""

    serializer_class = LLMBackendSerializer

    def get_queryset(self) -> Any:
        return _registry()

    def get_object(self) -> LLMBackend:
        name = self.kwargs["model_name"]
        entry = selectors.enabled_entry(name, self.get_queryset())
        if entry is None:
            raise Http404(f"No backend configured for model '{name}'")
        return entry


class RouteDetail(APIView):
    """The ordered targets a router tries for a model; 304 when the ETag still matches."""

    permission_classes = [require("backends.view_llmbackend")]

    @extend_schema(responses={200: RouteSerializer, 304: OpenApiResponse(description="Unchanged")})
    def get(self, request: Request, model_name: str) -> Response:
        entry = selectors.enabled_entry(model_name)
        if entry is None:
            raise Http404(f"No backend configured for model '{model_name}'")
        return _with_etag(request, lambda: selectors.route_for_entry(entry))


class RouteList(APIView):
    """Every enabled model's route."""

    permission_classes = [require("backends.view_llmbackend")]

    @extend_schema(
        responses={200: RouteListSerializer, 304: OpenApiResponse(description="Unchanged")}
    )
    def get(self, request: Request) -> Response:
        return _with_etag(request, lambda: {"routes": selectors.all_routes()})


def _with_etag(request: Request, build: Callable[[], dict[str, Any]]) -> Response:
    """304 when the client's copy is current (without building the body), else the body."""
    etag = selectors.routes_etag()
    if etag in request.headers.get("If-None-Match", ""):
        return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return Response(build(), headers={"ETag": etag, "Cache-Control": "no-cache"})


class SampleIngest(APIView):
    """Accept a batch of request samples from a router; keep the good ones, report the bad."""

    permission_classes = [require("backends.add_requestsample")]

    @extend_schema(request=SampleBatchSerializer, responses={202: IngestResultSerializer})
    def post(self, request: Request) -> Response:
        batch = SampleEnvelopeSerializer(data=request.data)
        batch.is_valid(raise_exception=True)
        good, errors = samples_split(batch.validated_data["samples"])
        accepted, duplicates = services.samples_ingest(samples=good) if good else (0, 0)
        first_bad = {e["index"]: e["field"] or "item" for e in reversed(errors)}
        for field in first_bad.values():
            SAMPLES_REJECTED.labels(field).inc()
        if first_bad:
            logger.warning(
                "metrics ingest: dropped %d of %d samples (first: %s)",
                len(first_bad), len(batch.validated_data["samples"]), errors[0],
            )  # fmt: skip
        rejected = len(first_bad)
        body = {
            "accepted": accepted,
            "duplicates": duplicates,
            "rejected": rejected,
            "errors": errors,
        }
        return Response(body, status=202)


@csrf_exempt  # a PUT/PATCH/DELETE here gets the JSON 404, not the CSRF middleware's HTML 403
def api_not_found(request: HttpRequest) -> JsonResponse:
    """Answer an unknown /api/ path with the API's JSON error shape."""
    return JsonResponse({"detail": "Not found."}, status=404)
