"""The registry: which backend serves each model, and what Athena learns about it."""

import re
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from backends.endpoints import UnsafeEndpoint, check_endpoint_url

# Ollama tags (`phi3:mini`), hub ids (`mlx-community/Phi-3-mini-4k-instruct-4bit`) and
# file-ish names (`llama3.1-8b_q4`). No empty path segments or `..`: clients normalise those
# away, and the name must survive a round trip through a URL path.
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9:._-]|/(?!/))*$")


def is_model_name(value: str) -> bool:
    return bool(MODEL_NAME_RE.fullmatch(value)) and ".." not in value and not value.endswith("/")


def validate_model_name(value: str) -> None:
    if not is_model_name(value):
        raise ValidationError(
            "Use letters, digits and : / . - _ only, starting with a letter or digit "
            "(no '..', '//' or trailing '/').",
            code="invalid_model_name",
        )


def validate_endpoint_url(value: str) -> None:
    try:
        check_endpoint_url(
            value,
            settings.ATHENA_ALLOWED_BACKEND_NETWORKS,
            resolve_hosts=settings.ATHENA_RESOLVE_BACKEND_HOSTS,
        )
    except UnsafeEndpoint as exc:
        raise ValidationError(f"Endpoint URL {exc}.", code="unsafe_endpoint") from None


class BackendType(models.TextChoices):
    OLLAMA = "ollama", "Ollama"
    MLX = "mlx", "MLX server"
    OPENAI = "openai", "OpenAI-compatible"
    AUTO = "auto", "Auto (MLX, then Ollama)"


class Health(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"
    DOWN = "down", "Down"


class LLMBackend(models.Model):
    """One model name and the backend that serves it."""

    model_name = models.CharField(
        max_length=255,
        unique=True,
        validators=[validate_model_name],
        help_text="The name clients ask for, e.g. phi3:mini or phi3:mini-synthesis.",
    )
    backend_type = models.CharField(max_length=32, choices=BackendType.choices)
    endpoint_url = models.CharField(max_length=500, validators=[validate_endpoint_url])
    upstream_model = models.CharField(
        max_length=255,
        blank=True,
        validators=[validate_model_name],
        help_text="The name the backend knows the model by; empty means the same as model_name.",
    )
    enabled = models.BooleanField(default=True)
    priority = models.IntegerField(default=100, help_text="Lower is preferred.")
    fallbacks = models.ManyToManyField(
        "self", through="FallbackLink", symmetrical=False, related_name="+", blank=True
    )

    # Performance, written by metrics ingest and the roll-ups.
    avg_tokens_per_sec = models.FloatField(null=True, blank=True)
    avg_latency_ms = models.FloatField(null=True, blank=True)
    total_requests = models.IntegerField(default=0)
    total_errors = models.IntegerField(default=0)
    # The newest cold start a router reported (a sample whose load_ms exceeded
    # ATHENA_COLD_START_MS): its model-load time and when it started. Ingest writes both
    # together, only from a sample newer than the one they hold.
    last_load_ms = models.FloatField(
        null=True, blank=True, help_text="Model-load time of the newest cold start."
    )
    last_cold_start_at = models.DateTimeField(null=True, blank=True)

    max_tokens = models.IntegerField(default=2048, validators=[MinValueValidator(1)])
    temperature_default = models.FloatField(
        default=0.7, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)]
    )
    timeout_seconds = models.IntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(3600)]
    )
    # Why apart from timeout_seconds (which bounds each read): an upstream that sends
    # keep-alives and no words never lets a read time out. Routers give a streamed answer
    # this long for its first content, then try the next target (docs/routing.md).
    first_token_timeout_seconds = models.IntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(3600)],
        help_text="Seconds a streamed answer may take to start before the next target is "
        "tried; empty means timeout_seconds, and it may not exceed it.",
    )

    health = models.CharField(max_length=16, choices=Health.choices, default=Health.UNKNOWN)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    health_error = models.CharField(max_length=500, blank=True)
    # Written by the probes (backends/probes.py) with conditional updates only.
    probe_failures = models.PositiveIntegerField(default=0, help_text="Consecutive failures.")
    probe_successes = models.PositiveIntegerField(default=0, help_text="Consecutive successes.")
    probe_round = models.CharField(max_length=64, blank=True, editable=False)
    probe_latency_ms = models.FloatField(null=True, blank=True)
    model_present = models.BooleanField(
        null=True, blank=True, help_text="The upstream model is in the backend's model list."
    )
    model_loaded = models.BooleanField(
        null=True, blank=True, help_text="The upstream model is in memory (unknown: empty)."
    )

    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        db_table = "llm_backends"  # the plan's name for the registry table
        ordering = ["model_name"]
        verbose_name = "LLM backend"
        # Checked by the gateway: who may send requests to the models (docs/gateway.md).
        permissions = [("use_llmbackend", "Can use the model through the gateway")]
        indexes = [models.Index(fields=["enabled"]), models.Index(fields=["backend_type"])]

    def __str__(self) -> str:
        return self.model_name

    def clean(self) -> None:
        self._fill_upstream_model()
        first, whole = self.first_token_timeout_seconds, self.timeout_seconds
        if isinstance(first, int) and isinstance(whole, int) and first > whole:
            # timeout_seconds is the longest any wait lasts; this may only shorten the first.
            raise ValidationError(
                {
                    "first_token_timeout_seconds": (
                        f"Must be at most timeout_seconds ({whole}), got {first}."
                    )
                },
                code="first_token_after_timeout",
            )

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Here, not only in clean(): `objects.create()`, fixtures and scripts skip clean(),
        # and every path must store the same value.
        self._fill_upstream_model()
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "model_name" in update_fields:
            kwargs["update_fields"] = {*update_fields, "upstream_model"}
        super().save(*args, **kwargs)

    def _fill_upstream_model(self) -> None:
        """An empty upstream name means the model name; store it spelled out."""
        if not self.upstream_model:
            self.upstream_model = self.model_name

    @property
    def resolved_upstream_model(self) -> str:
        return self.upstream_model or self.model_name


class FallbackLink(models.Model):
    """One step of an entry's ordered fallback chain."""

    entry = models.ForeignKey(LLMBackend, on_delete=models.CASCADE, related_name="fallback_links")
    fallback = models.ForeignKey(LLMBackend, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["entry", "fallback"], name="fallback_once_per_chain"),
            models.UniqueConstraint(fields=["entry", "position"], name="fallback_position_unique"),
            models.CheckConstraint(
                condition=~models.Q(entry=models.F("fallback")), name="fallback_not_self"
            ),
        ]


class ServiceKey(models.Model):
    """An API key for a machine client; only its hash is stored.

    A key without an owner is a service key: it may read routes and report metrics.
    A key with an owner acts as that user, with that user's permissions.
    """

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="api_keys",
        help_text="Leave empty for a service key (routes and metrics only).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class RequestSample(models.Model):
    """One routed call's outcome, as a router reported it."""

    class ErrorKind(models.TextChoices):
        CONNECT = "connect"
        TIMEOUT = "timeout"
        HTTP_4XX = "http_4xx"
        HTTP_5XX = "http_5xx"
        PROTOCOL = "protocol"
        CANCELLED = "cancelled"
        # Turned away at capacity (a 429, or a 503 with Retry-After): kept for the dashboard,
        # left out of the target's request and error counts (no fault of the backend).
        OVERLOAD = "overload"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    entry = models.ForeignKey(LLMBackend, null=True, on_delete=models.SET_NULL, related_name="+")
    model = models.CharField(max_length=255)
    backend_type = models.CharField(max_length=32)
    endpoint_url = models.CharField(max_length=500)
    started_at = models.DateTimeField()
    ok = models.BooleanField()
    error_kind = models.CharField(max_length=16, choices=ErrorKind.choices, blank=True)
    status_code = models.IntegerField(null=True)
    latency_ms = models.FloatField()
    ttft_ms = models.FloatField(null=True)
    load_ms = models.FloatField(null=True)  # Ollama's load_duration; null where not reported
    prompt_tokens = models.IntegerField(null=True)
    completion_tokens = models.IntegerField(null=True)
    tokens_per_sec = models.FloatField(null=True)
    fallback = models.BooleanField(default=False)
    stream = models.BooleanField(default=False)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["entry", "started_at"]),
            models.Index(fields=["started_at"]),
            models.Index(fields=["received_at"]),  # the roll-ups' watermark scan
        ]


class HealthCheck(models.Model):
    """One probe of one entry: what the probe saw and the state it left the entry in."""

    entry = models.ForeignKey(LLMBackend, on_delete=models.CASCADE, related_name="health_checks")
    checked_at = models.DateTimeField()
    ok = models.BooleanField()
    health = models.CharField(max_length=16, choices=Health.choices)
    latency_ms = models.FloatField(null=True)
    # A short classified error (e.g. "timeout", "HTTP 500"); never the backend's body.
    error = models.CharField(max_length=200, blank=True)
    model_present = models.BooleanField(null=True)
    model_loaded = models.BooleanField(null=True)
    backend_version = models.CharField(max_length=64, blank=True)  # Ollama's /api/version

    class Meta:
        ordering = ["-checked_at"]
        indexes = [
            models.Index(fields=["entry", "checked_at"]),
            models.Index(fields=["checked_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.entry_id} {self.checked_at:%Y-%m-%d %H:%M:%S} {self.health}"


class HourlyRollup(models.Model):
    """One entry's request samples in one UTC hour, aggregated by the database."""

    entry = models.ForeignKey(LLMBackend, on_delete=models.CASCADE, related_name="rollups")
    hour = models.DateTimeField()
    requests = models.IntegerField()
    errors = models.IntegerField()
    ok_requests = models.IntegerField()  # weights for the means below (they cover ok calls)
    avg_latency_ms = models.FloatField(null=True)
    p95_latency_ms = models.FloatField(null=True)
    avg_ttft_ms = models.FloatField(null=True)
    tps_samples = models.IntegerField(default=0)
    avg_tokens_per_sec = models.FloatField(null=True)
    cold_starts = models.IntegerField(default=0)  # samples with load_ms > ATHENA_COLD_START_MS
    avg_load_ms = models.FloatField(null=True)  # the mean load_ms of those cold starts
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["-hour"]
        constraints = [
            models.UniqueConstraint(fields=["entry", "hour"], name="rollup_once_per_entry_hour")
        ]

    def __str__(self) -> str:
        return f"{self.entry_id} {self.hour:%Y-%m-%d %H}:00"


class RollupWatermark(models.Model):
    """Where the roll-ups got to: samples received before `received_before` are rolled up."""

    name = models.CharField(max_length=32, primary_key=True)
    received_before = models.DateTimeField()


class ComparisonStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Stopped at its time limit"
    FAILED = "failed", "Failed"


ACTIVE_COMPARISON = (ComparisonStatus.QUEUED, ComparisonStatus.RUNNING)


class ComparisonRun(models.Model):
    """One measured comparison of every target that can serve a model (backends/comparisons.py)."""

    model_name = models.CharField(max_length=255)
    # The entry compared; the run (and its figures) outlives the entry's deletion.
    entry = models.ForeignKey(
        LLMBackend, null=True, on_delete=models.SET_NULL, related_name="comparison_runs"
    )
    repetitions = models.PositiveIntegerField()
    max_seconds = models.PositiveIntegerField(help_text="The run stops when this much has passed.")
    status = models.CharField(
        max_length=16, choices=ComparisonStatus.choices, default=ComparisonStatus.QUEUED
    )
    detail = models.CharField(max_length=500, blank=True)  # why it stopped, in words
    # Written when the run ends (backends.comparison_results.headline), for the list of runs.
    headline = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "backend comparison"
        constraints = [
            # One run at a time per model: two would share the targets and skew each other.
            models.UniqueConstraint(
                fields=["model_name"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_active_comparison_per_model",
            )
        ]

    def __str__(self) -> str:
        return f"{self.model_name} #{self.pk}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_COMPARISON


class ComparisonTarget(models.Model):
    """One target a comparison run measured, as it was configured when the run started."""

    run = models.ForeignKey(ComparisonRun, on_delete=models.CASCADE, related_name="targets")
    position = models.PositiveIntegerField()
    entry = models.ForeignKey(LLMBackend, null=True, on_delete=models.SET_NULL, related_name="+")
    model_name = models.CharField(max_length=255)
    backend_type = models.CharField(max_length=32)
    endpoint_url = models.CharField(max_length=500)
    upstream_model = models.CharField(max_length=255)
    in_chain = models.BooleanField(help_text="In the model's chain (else: same upstream model).")
    # Set when the target could not be measured at all (its warm-up call failed).
    unreachable = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="comparison_target_position")
        ]

    def __str__(self) -> str:
        return f"{self.backend_type} {self.endpoint_url} {self.upstream_model}"


class ComparisonCall(models.Model):
    """One timed call of one prompt to one target; repetition 0 is the unmeasured warm-up."""

    target = models.ForeignKey(ComparisonTarget, on_delete=models.CASCADE, related_name="calls")
    case = models.CharField(max_length=32)  # a name from backends.comparisons.PROMPT_SET
    repetition = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    ok = models.BooleanField()
    error_kind = models.CharField(max_length=16, blank=True)  # RequestSample.ErrorKind values
    error = models.CharField(max_length=200, blank=True)  # classified, never a backend's body
    status_code = models.IntegerField(null=True)
    latency_ms = models.FloatField()
    ttft_ms = models.FloatField(null=True)
    decode_tokens_per_sec = models.FloatField(null=True)
    prompt_tokens = models.IntegerField(null=True)
    completion_tokens = models.IntegerField(null=True)

    class Meta:
        ordering = ["target", "started_at", "pk"]

    @property
    def warmup(self) -> bool:
        return self.repetition == 0


class ComparisonLock(models.Model):
    """The comparison slot a running run holds: one run at a time (backends/comparisons.py)."""

    slot = models.CharField(max_length=32, unique=True)
    run = models.ForeignKey(ComparisonRun, on_delete=models.CASCADE, related_name="+")
    taken_at = models.DateTimeField(auto_now_add=True)
