"""The operator's UI: a declarative admin whose actions call services."""

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.html import format_html

from backends import services, tasks
from backends.charts import entry_charts
from backends.comparison_admin import compare_backends  # also registers the comparison pages
from backends.models import FallbackLink, LLMBackend, RequestSample, ServiceKey
from backends.registry_yaml import registry_to_yaml


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class FallbackFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        kept = [
            form.cleaned_data
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        chain = [row["fallback"] for row in sorted(kept, key=lambda row: row["position"])]
        try:
            services.validate_fallbacks(entry=self.instance, fallbacks=chain)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["fallbacks"]) from None


class FallbackInline(admin.TabularInline):
    model = FallbackLink
    formset = FallbackFormSet
    fk_name = "entry"
    extra = 0
    autocomplete_fields = ["fallback"]
    ordering = ["position"]
    verbose_name = "fallback"
    verbose_name_plural = "Fallback chain (tried in position order when this entry fails)"


@admin.register(LLMBackend)
class LLMBackendAdmin(admin.ModelAdmin):
    # Fits 1280 px beside the sidebar and the filters: health is one compact badge (its check
    # time and error under it and on hover), performance one column (its parts on hover).
    list_display = [
        "model_name",
        "backend_type",
        "endpoint_url",
        "upstream_model",
        "enabled",
        "priority",
        "health_badge",
        "performance",
    ]
    list_filter = ["backend_type", "enabled", "health"]
    search_fields = ["model_name", "endpoint_url", "upstream_model"]
    list_per_page = 50
    inlines = [FallbackInline]
    actions = [
        "enable_selected",
        "disable_selected",
        "export_selected_yaml",
        "probe_now",
        compare_backends,
    ]
    change_form_template = "admin/backends/llmbackend/change_form.html"
    readonly_fields = [
        "health",
        "health_checked_at",
        "health_error",
        "probe_latency_ms",
        "model_present",
        "model_loaded",
        "avg_tokens_per_sec",
        "avg_latency_ms",
        "last_load_ms",
        "last_cold_start_at",
        "total_requests",
        "total_errors",
        "created_by",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "model_name",
                    "backend_type",
                    "endpoint_url",
                    "upstream_model",
                    "enabled",
                    "priority",
                    "description",
                ]
            },
        ),
        (
            "Defaults",
            {
                "fields": [
                    "max_tokens",
                    "temperature_default",
                    "timeout_seconds",
                    "first_token_timeout_seconds",
                ]
            },
        ),
        (
            "Health and performance",
            {
                "fields": [
                    "health",
                    "health_checked_at",
                    "health_error",
                    "probe_latency_ms",
                    "model_present",
                    "model_loaded",
                    "avg_tokens_per_sec",
                    "avg_latency_ms",
                    "last_load_ms",
                    "last_cold_start_at",
                    "total_requests",
                    "total_errors",
                ]
            },
        ),
        ("History", {"fields": ["created_by", "created_at", "updated_at"]}),
    ]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        # The list needs the width: without the app sidebar (the breadcrumbs and the index
        # still lead everywhere) eight columns and the filters fit 1280 px.
        extra_context = {**(extra_context or {}), "is_nav_sidebar_enabled": False}
        return super().changelist_view(request, extra_context)

    def get_fieldsets(self, request: HttpRequest, obj: LLMBackend | None = None) -> Any:
        # A new entry has no health, figures or history yet: the add form shows what to fill.
        fieldsets = super().get_fieldsets(request, obj)
        return fieldsets if obj is not None else fieldsets[:2]

    @admin.display(description="health", ordering="health")
    def health_badge(self, entry: LLMBackend) -> str:
        checked = (
            f"checked {entry.health_checked_at:%Y-%m-%d %H:%M:%S} UTC"
            if entry.health_checked_at
            else "never probed"
        )
        hover = f"{checked}: {entry.health_error}" if entry.health_error else checked
        return format_html(
            '<span class="health-badge {}" title="{}">● {}</span>{}',
            entry.health,
            hover,
            entry.get_health_display(),
            format_html('<br><small class="last-error">{}</small>', _shorten(entry.health_error))
            if entry.health_error
            else "",
        )

    @admin.display(description="performance", ordering="avg_tokens_per_sec")
    def performance(self, entry: LLMBackend) -> str:
        """Tokens/s and latency, then the call counts and the newest cold start's load time."""
        if entry.total_requests == 0 and entry.avg_tokens_per_sec is None:
            return format_html('<span class="perf-none">{}</span>', "no calls yet")
        speed = [
            f"{entry.avg_tokens_per_sec:.1f} tok/s" if entry.avg_tokens_per_sec is not None else "",
            f"{entry.avg_latency_ms:.0f} ms" if entry.avg_latency_ms is not None else "",
        ]
        load = ""
        if entry.last_load_ms is not None and entry.last_cold_start_at is not None:
            load = format_html(
                ', <span class="last-load" title="cold start at {}">load {} ms</span>',
                entry.last_cold_start_at.isoformat(timespec="seconds"),
                f"{entry.last_load_ms:.0f}",
            )
        return format_html(
            '<span class="perf" title="mean tokens/s and latency of successful calls; calls and'
            ' errors routers reported">{}</span><br><small>{}, {}{}</small>',
            " · ".join(part for part in speed if part) or "–",
            _count(entry.total_requests, "call"),
            _count(entry.total_errors, "error"),
            load,
        )

    def save_model(self, request: HttpRequest, obj: LLMBackend, form: Any, change: bool) -> None:
        """Write through the services, as the API does (rename rule, duplicate check)."""
        # Only what the operator changed: an untouched upstream_model follows a rename.
        fields = {name: form.cleaned_data[name] for name in form.changed_data}
        if change:
            stored = LLMBackend.objects.get(pk=obj.pk)
            saved = services.backend_update(entry=stored, fields=fields)
        else:
            fields = {name: form.cleaned_data[name] for name in services.BACKEND_FIELDS
                      if name in form.cleaned_data}  # fmt: skip
            user = request.user if isinstance(request.user, AbstractBaseUser) else None
            saved = services.backend_create(fields=fields, user=user)
        # The inline fallback formset saves against this instance next: make it the row.
        obj.pk = saved.pk
        obj.refresh_from_db()

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> Any:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except services.DuplicateModel as exc:
            # Another save took the name between the form's check and ours (the unique index
            # decided); the whole save was rolled back.
            self.message_user(request, f"{exc}; nothing was saved.", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        entry = self.get_object(request, object_id)
        if entry is not None:
            extra_context = {**(extra_context or {}), "charts": entry_charts(entry)}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Probe selected backends now", permissions=["change"])
    def probe_now(self, request: HttpRequest, queryset: QuerySet[LLMBackend]) -> None:
        # A worker probes them: a probe can take the whole probe timeout per entry, which a
        # request should not wait for. On commit, so the worker sees what this request sees.
        entry_ids = list(queryset.values_list("pk", flat=True))
        transaction.on_commit(lambda: tasks.probe_entries.delay(entry_ids))
        self.message_user(
            request,
            f"Probe queued for {len(entry_ids)} backend(s); their health updates when a worker "
            "has probed them (reload in a few seconds).",
            messages.INFO,
        )

    @admin.action(description="Enable selected backends", permissions=["change"])
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[LLMBackend]) -> None:
        count = services.backends_set_enabled(entries=queryset, enabled=True)
        self.message_user(request, f"Enabled {count} backend(s).", messages.SUCCESS)

    @admin.action(description="Disable selected backends", permissions=["change"])
    def disable_selected(self, request: HttpRequest, queryset: QuerySet[LLMBackend]) -> None:
        count = services.backends_set_enabled(entries=queryset, enabled=False)
        self.message_user(request, f"Disabled {count} backend(s).", messages.SUCCESS)

    @admin.action(description="Export selected as YAML", permissions=["view"])
    def export_selected_yaml(
        self, request: HttpRequest, queryset: QuerySet[LLMBackend]
    ) -> HttpResponse:
        response = HttpResponse(registry_to_yaml(queryset), content_type="application/yaml")
        response["Content-Disposition"] = 'attachment; filename="athena-registry.yaml"'
        return response


@admin.register(ServiceKey)
class ServiceKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "owner", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    fields = ["name", "owner", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_selected"]

    def get_readonly_fields(self, request: HttpRequest, obj: ServiceKey | None = None) -> Any:
        # A key's owner decides what it may do; changing it later would silently re-scope it.
        return [*self.readonly_fields, "owner"] if obj else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ServiceKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw = services.service_key_create(name=obj.name, owner=obj.owner)
        obj.pk, obj.prefix = key.pk, key.prefix
        self.message_user(
            request,
            f"Key created. Copy it now, it will not be shown again: {raw}",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ServiceKey]) -> None:
        count = services.service_keys_revoke(keys=queryset)
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)


@admin.register(RequestSample)
class RequestSampleAdmin(admin.ModelAdmin):
    list_display = [
        "started_at",
        "model",
        "backend_type",
        "ok",
        "error_kind",
        "latency_ms",
        "ttft_ms",
        "load_ms",
        "tokens_per_sec",
        "fallback",
    ]
    list_filter = ["ok", "backend_type", "error_kind", "fallback"]
    search_fields = ["model", "endpoint_url"]
    date_hierarchy = "started_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
