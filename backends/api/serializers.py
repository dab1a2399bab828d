"""Request and response shapes of the API."""

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from backends.models import BackendType, LLMBackend, RequestSample, validate_model_name

# The JSON type each kind of field takes, most specific first. DRF alone coerces scalars
# ("1" -> 1, 0 -> false, 5 -> "5"): a client that sends the wrong type has a bug, and
# accepting it hides the bug until a value that does not coerce arrives.
_JSON_TYPES: tuple[tuple[type[serializers.Field], tuple[type, ...], str], ...] = (
    (serializers.BooleanField, (bool,), "a boolean"),
    (serializers.IntegerField, (int,), "an integer"),
    (serializers.FloatField, (int, float), "a number"),
    (serializers.ListField, (list,), "a list"),
    (serializers.CharField, (str,), "a string"),
    (serializers.ChoiceField, (str,), "a string"),
    (serializers.UUIDField, (str,), "a string"),
    (serializers.DateTimeField, (str,), "a string"),
)


def _json_type_error(field: serializers.Field, value: Any) -> str | None:
    """Say what is wrong if a JSON value has the wrong type for its field, else None."""
    if value is None:
        return None  # the field's own allow_null decides
    for kind, types, name in _JSON_TYPES:
        if isinstance(field, kind):
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                return f"Must be {name}, not {_json_name(value)}."
            if isinstance(field, serializers.ListField) and isinstance(value, list):
                for item in value:
                    if message := _json_type_error(field.child, item):
                        return f"Each item: {message[0].lower()}{message[1:]}"
            return None
    return None


def _json_name(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    return names.get(type(value), "an object" if isinstance(value, Mapping) else "a list")


class StrictJSONTypes(serializers.Serializer):
    """Refuse a JSON value of the wrong type (a 400 naming the field) instead of coercing it."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping) and not hasattr(data, "getlist"):  # JSON, not a form
            errors = {
                name: [message]
                for name, field in self.fields.items()
                if not field.read_only
                and name in data
                and (message := _json_type_error(field, data[name]))
            }
        else:
            errors = {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not errors or not isinstance(exc.detail, dict):
                raise
            # Report every bad field at once: the other fields' errors, and the type errors
            # instead of whatever the coercion made of those values.
            raise serializers.ValidationError({**exc.detail, **errors}) from None
        if errors:
            raise serializers.ValidationError(errors)
        return value


class FallbackNamesField(serializers.ListField):
    """Written as model names; read back as the entry's fallback chain, in order."""

    def get_attribute(self, instance: LLMBackend) -> list[str]:
        return [link.fallback.model_name for link in instance.fallback_links.all()]


class LLMBackendSerializer(StrictJSONTypes, serializers.ModelSerializer):
    """The plan's LLMBackendCreate/LLMBackendResponse, plus the fields Athena adds."""

    model_name = serializers.CharField(max_length=255, validators=[validate_model_name])
    backend_type = serializers.ChoiceField(
        choices=BackendType.choices,
        error_messages={
            "invalid_choice": "'{input}' is not a backend type; use ollama, mlx, openai or auto."
        },
    )
    fallbacks = FallbackNamesField(
        child=serializers.CharField(max_length=255),
        required=False,
        max_length=16,
        help_text="Model names of other entries to try, in order, when this one fails.",
    )
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = LLMBackend
        fields = [
            "id",
            "model_name",
            "backend_type",
            "endpoint_url",
            "upstream_model",
            "enabled",
            "priority",
            "fallbacks",
            "avg_tokens_per_sec",
            "avg_latency_ms",
            "total_requests",
            "total_errors",
            "max_tokens",
            "temperature_default",
            "timeout_seconds",
            "first_token_timeout_seconds",
            "description",
            "health",
            "health_checked_at",
            "last_load_ms",
            "last_cold_start_at",
            "created_at",
            "updated_at",
            "created_by",
        ]
        read_only_fields = [
            "avg_tokens_per_sec",
            "avg_latency_ms",
            "total_requests",
            "total_errors",
            "health",
            "health_checked_at",
            "last_load_ms",
            "last_cold_start_at",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {"description": {"allow_null": True}}

    def to_representation(self, instance: LLMBackend) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["upstream_model"] = instance.resolved_upstream_model
        return data

    def validate_description(self, value: str | None) -> str:
        return value or ""


class RouteTargetSerializer(serializers.Serializer):
    entry_id = serializers.IntegerField(allow_null=True)
    model_name = serializers.CharField()
    backend_type = serializers.ChoiceField(choices=["ollama", "mlx", "openai"])
    endpoint_url = serializers.CharField()
    upstream_model = serializers.CharField()
    timeout_seconds = serializers.IntegerField()
    first_token_timeout_seconds = serializers.IntegerField(allow_null=True)
    max_tokens = serializers.IntegerField()
    temperature_default = serializers.FloatField()
    health = serializers.ChoiceField(choices=["unknown", "healthy", "degraded", "down"])


class RouteSerializer(serializers.Serializer):
    model = serializers.CharField()
    targets = RouteTargetSerializer(many=True)


class RouteListSerializer(serializers.Serializer):
    routes = RouteSerializer(many=True)


# Integer columns are 32-bit on PostgreSQL and ids 64-bit: a larger number would fail in the
# database (a 500), so the API refuses it with a 400.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


class SampleSerializer(StrictJSONTypes, serializers.ModelSerializer):
    id = serializers.UUIDField()
    entry_id = serializers.IntegerField(
        min_value=1, max_value=INT64_MAX, allow_null=True, required=False
    )
    error_kind = serializers.ChoiceField(
        choices=RequestSample.ErrorKind.choices, allow_null=True, required=False
    )
    latency_ms = serializers.FloatField(min_value=0)
    ttft_ms = serializers.FloatField(min_value=0, allow_null=True, required=False)
    load_ms = serializers.FloatField(min_value=0, allow_null=True, required=False)
    tokens_per_sec = serializers.FloatField(min_value=0, allow_null=True, required=False)
    prompt_tokens = serializers.IntegerField(
        min_value=0, max_value=INT32_MAX, allow_null=True, required=False
    )
    completion_tokens = serializers.IntegerField(
        min_value=0, max_value=INT32_MAX, allow_null=True, required=False
    )

    class Meta:
        model = RequestSample
        fields = [
            "id",
            "entry_id",
            "model",
            "backend_type",
            "endpoint_url",
            "started_at",
            "ok",
            "error_kind",
            "status_code",
            "latency_ms",
            "ttft_ms",
            "load_ms",
            "prompt_tokens",
            "completion_tokens",
            "tokens_per_sec",
            "fallback",
            "stream",
        ]
        extra_kwargs = {"status_code": {"required": False}}

    def validate_error_kind(self, value: str | None) -> str:
        return value or ""


class SampleBatchSerializer(StrictJSONTypes, serializers.Serializer):
    """The documented body: a batch of samples (each one is checked on its own)."""

    samples = SampleSerializer(many=True, min_length=1, max_length=1000, allow_empty=False)


class SampleEnvelopeSerializer(StrictJSONTypes, serializers.Serializer):
    """A batch at all: `samples` is a list of 1 to 1,000 items, whatever the items are."""

    samples = serializers.ListField(min_length=1, max_length=1000, allow_empty=False)


class SampleError(serializers.Serializer):
    index = serializers.IntegerField(help_text="The sample's position in the batch.")
    field = serializers.CharField(allow_null=True, help_text="Null when the item is no object.")
    message = serializers.CharField()


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    errors = SampleError(many=True)


def _messages(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in _messages(value)]
    if isinstance(detail, list):
        return [m for value in detail for m in _messages(value)]
    return [str(detail)]


def samples_split(items: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Validate each sample on its own: (the good ones, validated; an error per bad field).

    One bad sample (a router bug, a negative count) must not cost the batch's good ones.
    """
    good: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        one = SampleSerializer(data=item)
        if one.is_valid():
            good.append(dict(one.validated_data))
            continue
        for name, detail in one.errors.items():
            field = None if name in ("non_field_errors", "__all__") else name
            message = " ".join(_messages(detail))
            errors.append({"index": index, "field": field, "message": message})
    return good, errors
