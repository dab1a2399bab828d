"""The admin side of backend comparisons: past runs, one run's result page, start and cancel.

Pages (inside the admin site):
- ``admin:backends_comparisonrun_changelist`` /admin/backends/comparisonrun/: past runs, and
  a form to start one (operators);
- ``admin:backends_comparisonrun_change`` /admin/backends/comparisonrun/<id>/change/: one
  run's targets side by side, charts with the spread, the fastest and by how much;
- ``admin:backends_comparisonrun_start`` and ``admin:backends_comparisonrun_cancel``: POST only.

Viewing needs ``backends.view_llmbackend``; starting and cancelling ``change_llmbackend``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from backends import comparisons
from backends.comparison_charts import dot_plot
from backends.comparison_selectors import RunSummary, run_summary, runs
from backends.models import ComparisonRun, LLMBackend

VIEW, OPERATE = "backends.view_llmbackend", "backends.change_llmbackend"


def _result_url(run_id: int) -> str:
    return reverse("admin:backends_comparisonrun_change", args=[run_id])


def _start_runs(
    request: HttpRequest, model_names: list[str], repetitions: Any = None
) -> list[ComparisonRun]:
    """Start a run per model; say what went wrong for the others, naming the field."""
    started = []
    for name in model_names:
        try:
            started.append(
                comparisons.comparison_start(
                    model_name=name, repetitions=repetitions, user=request.user
                )
            )
        except comparisons.ComparisonInProgress as exc:
            messages.warning(request, str(exc))
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                messages.error(request, f"Cannot compare {name!r}: {field}: {' '.join(errors)}")
    return started


@admin.action(description="Compare backends serving the selected models", permissions=["change"])
def compare_backends(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[LLMBackend]
) -> HttpResponse:
    """The LLM backends changelist's action: one comparison run per selected model."""
    started = _start_runs(request, list(queryset.values_list("model_name", flat=True)))
    if started:
        names = ", ".join(run.model_name for run in started)
        messages.success(request, f"Comparison started for {names}.")
    if len(started) == 1:
        return HttpResponseRedirect(_result_url(started[0].pk))
    return HttpResponseRedirect(reverse("admin:backends_comparisonrun_changelist"))


def _side_by_side(summary: RunSummary) -> list[dict[str, Any]]:
    """One column per target, for the result table."""
    ratios = {s.target.pk: r for s, r in summary.ratios}
    fastest = summary.fastest.target.pk if summary.fastest else None
    return [
        {
            "summary": s,
            "fastest": s.target.pk == fastest,
            "ratio": 1.0 if s.target.pk == fastest else ratios.get(s.target.pk),
        }
        for s in summary.targets
    ]


def _case_rows(summary: RunSummary, columns: list[dict[str, Any]]) -> list[Any]:
    """Per prompt case: each target's median latency, in column order."""
    return [
        (case, [(c["summary"].median_latency_by_case.get(case), c["fastest"]) for c in columns])
        for case in summary.cases
    ]


_CHARTS = (
    ("decode_tokens_per_sec", "Decode speed, higher is faster", "tokens/s"),
    ("ttft_ms", "Time to first token, lower is faster", "ms"),
    ("latency_ms", "End-to-end latency, lower is faster", "ms"),
)


def _charts(summary: RunSummary) -> list[Any]:
    """One dot plot per figure, a row per target, the fastest's row in green."""
    best = next((i for i, s in enumerate(summary.targets) if s is summary.fastest), None)
    return [
        dot_plot(
            [(s.short_label, getattr(s, figure)) for s in summary.targets],
            title=title,
            unit=unit,
            best=best,
        )
        for figure, title, unit in _CHARTS
    ]


@admin.register(ComparisonRun)
class ComparisonRunAdmin(admin.ModelAdmin):
    list_display = ["model_name", "status", "created_at", "created_by", "repetitions", "result"]
    list_display_links = ["model_name"]
    list_filter = ["status"]
    search_fields = ["model_name"]
    list_select_related = ["created_by"]
    list_per_page = 50
    change_list_template = "admin/backends/comparisonrun/change_list.html"

    @admin.display(description="result")
    def result(self, run: ComparisonRun) -> str:
        return run.headline or run.detail

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(VIEW)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(VIEW)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are started with the form on the list page, or the API

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a run's figures are measurements: never edited

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        active = obj is not None and obj.is_active
        return request.user.has_perm(OPERATE) and not active

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("start/", view(start_view), name="backends_comparisonrun_start"),
            path("<int:run_id>/cancel/", view(cancel_view), name="backends_comparisonrun_cancel"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        context = {
            "title": "Backend comparisons",
            **(extra_context or {}),
            "can_operate": request.user.has_perm(OPERATE),
            "model_names": LLMBackend.objects.values_list("model_name", flat=True),
            "default_repetitions": settings.ATHENA_COMPARISON_REPETITIONS,
            "max_repetitions": settings.ATHENA_COMPARISON_MAX_REPETITIONS,
        }
        return super().changelist_view(request, context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """The result page (read-only: there is nothing to change on a run)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = runs().filter(pk=object_id).first() if object_id.isdigit() else None
        if run is None:
            raise Http404(f"No comparison run {object_id}.")
        summary = run_summary(run, comparisons.CASES)
        columns = _side_by_side(summary)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Comparison of {run.model_name}",
            "run": run,
            "summary": summary,
            "columns": columns,
            "case_rows": _case_rows(summary, columns),
            "charts": _charts(summary),
            "prompt_set": comparisons.PROMPT_SET,
            "past_runs": runs(run.model_name).exclude(pk=run.pk)[:20],
            "can_operate": request.user.has_perm(OPERATE),
        }
        return TemplateResponse(request, "admin/backends/comparisonrun/result.html", context)


def _require_operator(request: HttpRequest) -> None:
    if not request.user.has_perm(OPERATE):
        raise PermissionDenied


@require_POST
def start_view(request: HttpRequest) -> HttpResponse:
    """Start a run from the list page's form or the result page's "Run again"."""
    _require_operator(request)
    raw = request.POST.get("repetitions", "").strip()
    # A form's fields are strings: a number is read as one, anything else is refused by the
    # service, naming the field.
    repetitions: Any = int(raw) if raw.isdigit() else (raw or None)
    started = _start_runs(request, [request.POST.get("model_name", "")], repetitions)
    if started:
        return HttpResponseRedirect(_result_url(started[0].pk))
    return HttpResponseRedirect(reverse("admin:backends_comparisonrun_changelist"))


@require_POST
def cancel_view(request: HttpRequest, run_id: int) -> HttpResponse:
    _require_operator(request)
    run = get_object_or_404(ComparisonRun, pk=run_id)
    if comparisons.comparison_cancel(run_id=run.pk, user=request.user):
        messages.success(request, "Cancelled: no further call will be sent.")
    else:
        messages.warning(request, f"The run had already ended ({run.get_status_display()}).")
    return HttpResponseRedirect(_result_url(run.pk))
