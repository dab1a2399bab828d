"""The comparison API: start a run, read runs, cancel one (backends/comparisons.py)."""

from typing import Any

from django.conf import settings
from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backends import comparisons
from backends.api.permissions import require
from backends.api.schema import ErrorSerializer
from backends.api.serializers import StrictJSONTypes
from backends.comparison_selectors import RunSummary, TargetSummary, run_summary, runs
from backends.models import ComparisonRun, ComparisonStatus, validate_model_name

VIEW = require("backends.view_llmbackend")
OPERATE = require("backends.change_llmbackend")


class ComparisonStartSerializer(StrictJSONTypes, serializers.Serializer):
    model_name = serializers.CharField(max_length=255, validators=[validate_model_name])
    repetitions = serializers.IntegerField(
        min_value=1,
        max_value=settings.ATHENA_COMPARISON_MAX_REPETITIONS,
        default=settings.ATHENA_COMPARISON_REPETITIONS,
        help_text="How many times each prompt of the standard set goes to each target.",
    )
    max_seconds = serializers.IntegerField(
        min_value=comparisons.MIN_SECONDS,
        max_value=settings.ATHENA_COMPARISON_MAX_SECONDS,
        required=False,
        help_text="Stop the run after this long (default: ATHENA_COMPARISON_MAX_SECONDS).",
    )


class SpreadSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    median = serializers.FloatField(allow_null=True)
    mean = serializers.FloatField(allow_null=True)
    min = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)
    stdev = serializers.FloatField(allow_null=True)


class TargetResultSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    model_name = serializers.CharField()
    backend_type = serializers.CharField()
    endpoint_url = serializers.CharField()
    upstream_model = serializers.CharField()
    in_chain = serializers.BooleanField(help_text="In the model's chain; else same upstream model.")
    unreachable = serializers.CharField(help_text="Why the target could not be measured, or ''.")
    calls = serializers.IntegerField(help_text="Measured calls sent (the warm-up left out).")
    ok = serializers.IntegerField()
    errors = serializers.DictField(child=serializers.IntegerField(), help_text="By error kind.")
    ttft_ms = SpreadSerializer()
    decode_tokens_per_sec = SpreadSerializer()
    latency_ms = SpreadSerializer()
    ratio = serializers.FloatField(
        allow_null=True, help_text="How many times slower than the fastest (1 for it)."
    )


class ComparisonRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    model_name = serializers.CharField()
    status = serializers.ChoiceField(choices=ComparisonStatus.choices)
    detail = serializers.CharField()
    headline = serializers.CharField()
    repetitions = serializers.IntegerField()
    max_seconds = serializers.IntegerField()
    created_by = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    fastest = serializers.IntegerField(allow_null=True, help_text="The fastest target's position.")
    fastest_by = serializers.CharField(help_text="decode_tokens_per_sec or latency_ms, or ''.")
    targets = TargetResultSerializer(many=True)


class ComparisonStartedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    url = serializers.CharField(help_text="Where to read the run.")


def _target(s: TargetSummary, ratio: float | None) -> dict[str, Any]:
    t = s.target
    return {
        "position": t.position,
        "model_name": t.model_name,
        "backend_type": t.backend_type,
        "endpoint_url": t.endpoint_url,
        "upstream_model": t.upstream_model,
        "in_chain": t.in_chain,
        "unreachable": t.unreachable,
        "calls": s.calls,
        "ok": s.ok,
        "errors": s.errors,
        "ttft_ms": s.ttft_ms.as_dict(),
        "decode_tokens_per_sec": s.decode_tokens_per_sec.as_dict(),
        "latency_ms": s.latency_ms.as_dict(),
        "ratio": ratio,
    }


def run_body(summary: RunSummary) -> dict[str, Any]:
    run = summary.run
    ratios = {s.target.pk: r for s, r in summary.ratios}
    if summary.fastest is not None:
        ratios[summary.fastest.target.pk] = 1.0
    return {
        "id": run.pk,
        "model_name": run.model_name,
        "status": run.status,
        "detail": run.detail,
        "headline": run.headline,
        "repetitions": run.repetitions,
        "max_seconds": run.max_seconds,
        "created_by": run.created_by.get_username() if run.created_by else None,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "fastest": summary.fastest.target.position if summary.fastest else None,
        "fastest_by": summary.metric,
        "targets": [_target(s, ratios.get(s.target.pk)) for s in summary.targets],
    }


def _run_or_404(run_id: int) -> ComparisonRun:
    run = runs().filter(pk=run_id).first()
    if run is None:
        raise Http404(f"No comparison run {run_id}.")
    return run


_IN_PROGRESS = OpenApiResponse(ErrorSerializer, description="A run of this model is in progress.")


class ComparisonListStart(APIView):
    """List the 50 newest comparison runs, or start one for a model."""

    def get_permissions(self) -> list[Any]:
        return [OPERATE() if self.request.method == "POST" else VIEW()]

    @extend_schema(
        parameters=[OpenApiParameter("model", str, description="Only this model's runs.")],
        responses={200: ComparisonRunSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        found = runs(request.query_params.get("model") or None)[:50]
        return Response([run_body(run_summary(r, comparisons.CASES)) for r in found])

    @extend_schema(
        request=ComparisonStartSerializer,
        responses={202: ComparisonStartedSerializer, 409: _IN_PROGRESS},
    )
    def post(self, request: Request) -> Response:
        form = ComparisonStartSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            run = comparisons.comparison_start(**form.validated_data, user=request.user)
        except comparisons.ComparisonInProgress as exc:
            return Response({"detail": str(exc), "model_name": [str(exc)]}, status=409)
        url = request.build_absolute_uri(reverse("comparison-detail", args=[run.pk]))
        return Response({"id": run.pk, "status": run.status, "url": url}, status=202)


class ComparisonDetail(APIView):
    """One run: every target's figures side by side, and which is fastest by how much."""

    permission_classes = [VIEW]

    @extend_schema(responses={200: ComparisonRunSerializer})
    def get(self, request: Request, run_id: int) -> Response:
        return Response(run_body(run_summary(_run_or_404(run_id), comparisons.CASES)))


class ComparisonCancel(APIView):
    """Cancel a queued or running run; the call in flight finishes, no other is sent."""

    permission_classes = [OPERATE]

    @extend_schema(
        request=None,
        responses={
            200: ComparisonRunSerializer,
            409: OpenApiResponse(ErrorSerializer, description="The run had already ended."),
        },
    )
    def post(self, request: Request, run_id: int) -> Response:
        run = _run_or_404(run_id)
        if not comparisons.comparison_cancel(run_id=run.pk, user=request.user):
            run.refresh_from_db()
            detail = f"Comparison run {run.pk} has already ended ({run.status})."
            return Response({"detail": detail}, status=status.HTTP_409_CONFLICT)
        run.refresh_from_db()
        return Response(run_body(run_summary(run, comparisons.CASES)))
