"""Everything that writes the registry, the API keys and the request samples."""

import hashlib
import hmac
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from backends.models import FallbackLink, LLMBackend, RequestSample, ServiceKey
from backends.selectors import chain_entries, fallback_graph

BACKEND_FIELDS = (
    "model_name",
    "backend_type",
    "endpoint_url",
    "upstream_model",
    "enabled",
    "priority",
    "max_tokens",
    "temperature_default",
    "timeout_seconds",
    "first_token_timeout_seconds",
    "description",
)


class DuplicateModel(Exception):
    def __init__(self, model_name: str) -> None:
        super().__init__(f"Backend for model '{model_name}' already exists")


# --- registry ---


def _save_entry(entry: LLMBackend, fallbacks: Sequence[str] | None) -> LLMBackend:
    entry.full_clean(validate_unique=False)
    clash = LLMBackend.objects.filter(model_name=entry.model_name).exclude(pk=entry.pk)
    if clash.exists():
        raise DuplicateModel(entry.model_name)
    try:
        with transaction.atomic():
            entry.save()
            if fallbacks is not None:
                backend_set_fallbacks(entry=entry, model_names=fallbacks)
    except IntegrityError:
        # Two creates raced past the check above; the unique index decided.
        raise DuplicateModel(entry.model_name) from None
    return entry


def backend_create(
    *,
    fields: dict[str, Any],
    fallbacks: Sequence[str] | None = None,
    user: AbstractBaseUser | None = None,
) -> LLMBackend:
    entry = LLMBackend(**{k: v for k, v in fields.items() if k in BACKEND_FIELDS})
    if user is not None and user.pk is not None:
        entry.created_by_id = user.pk
    return _save_entry(entry, fallbacks)


def backend_update(
    *, entry: LLMBackend, fields: dict[str, Any], fallbacks: Sequence[str] | None = None
) -> LLMBackend:
    tracked_name = entry.upstream_model in ("", entry.model_name)
    for name, value in fields.items():
        if name in BACKEND_FIELDS:
            setattr(entry, name, value)
    if tracked_name and "upstream_model" not in fields:
        # An entry whose upstream name was its model name keeps following a rename.
        entry.upstream_model = ""
    return _save_entry(entry, fallbacks)


def validate_fallbacks(*, entry: LLMBackend, fallbacks: Sequence[LLMBackend]) -> None:
    """Refuse a chain that repeats an entry, names the entry itself, or closes a cycle."""
    if len({f.pk for f in fallbacks}) != len(fallbacks):
        raise ValidationError({"fallbacks": "A model may appear only once in the chain."})
    graph = fallback_graph()
    for fallback in fallbacks:
        if fallback.pk == entry.pk:
            raise ValidationError({"fallbacks": "An entry cannot fall back to itself."})
        if any(
            node.pk == entry.pk for node in chain_entries(fallback, enabled_only=False, graph=graph)
        ):
            raise ValidationError(
                {
                    "fallbacks": f"Falling back to '{fallback.model_name}' would make a cycle: "
                    f"'{fallback.model_name}' already falls back to '{entry.model_name}'."
                }
            )


def backend_set_fallbacks(*, entry: LLMBackend, model_names: Sequence[str]) -> None:
    """Replace the entry's ordered fallback chain, given the fallbacks' model names."""
    by_name = {e.model_name: e for e in LLMBackend.objects.filter(model_name__in=model_names)}
    missing = [n for n in model_names if n not in by_name]
    if missing:
        raise ValidationError({"fallbacks": f"No backend configured for model '{missing[0]}'."})
    fallbacks = [by_name[n] for n in model_names]
    validate_fallbacks(entry=entry, fallbacks=fallbacks)
    with transaction.atomic():
        FallbackLink.objects.filter(entry=entry).delete()
        FallbackLink.objects.bulk_create(
            FallbackLink(entry=entry, fallback=f, position=i) for i, f in enumerate(fallbacks)
        )


def backends_set_enabled(*, entries: QuerySet[LLMBackend], enabled: bool) -> int:
    return entries.exclude(enabled=enabled).update(enabled=enabled, updated_at=timezone.now())


# --- API keys ---

KEY_PREFIX = "athk_"


def _hash_key(raw: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(raw.encode()).hexdigest()


def service_key_create(
    *, name: str, owner: AbstractBaseUser | None = None
) -> tuple[ServiceKey, str]:
    """Create a key and return it with its only plain-text copy."""
    prefix = secrets.token_hex(6)
    raw = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = ServiceKey.objects.create(
        name=name,
        prefix=prefix,
        key_hash=_hash_key(raw),
        owner=owner,  # type: ignore[misc]
    )
    return key, raw


def looks_like_service_key(raw: str) -> bool:
    return raw.startswith(KEY_PREFIX)


def service_key_authenticate(raw: str) -> ServiceKey | None:
    """Return the active key matching raw, or None; marks it used at most once a minute."""
    prefix = raw[len(KEY_PREFIX) :].split("_", 1)[0]
    key = ServiceKey.objects.select_related("owner").filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.key_hash, _hash_key(raw)) or not key.is_active:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
        ServiceKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def service_keys_revoke(*, keys: QuerySet[ServiceKey]) -> int:
    return keys.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


# --- request samples ---


def is_cold_start(load_ms: float | None) -> bool:
    """A call that waited for a model load: slow for a reason, and never a failure."""
    return load_ms is not None and load_ms > settings.ATHENA_COLD_START_MS


def _newest_cold_starts(samples: Iterable[RequestSample]) -> dict[int, RequestSample]:
    newest: dict[int, RequestSample] = {}
    for s in samples:
        if s.entry_id is None or not is_cold_start(s.load_ms):
            continue
        seen = newest.get(s.entry_id)
        if seen is None or s.started_at > seen.started_at:
            newest[s.entry_id] = s
    return newest


def _counter_updates(samples: Iterable[RequestSample]) -> dict[int, dict[str, float]]:
    totals: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for s in samples:
        if s.entry_id is None or s.error_kind == RequestSample.ErrorKind.OVERLOAD:
            continue
        t = totals[s.entry_id]
        t["requests"] += 1
        if not s.ok:
            t["errors"] += 1
            continue
        t["ok"] += 1
        t["latency_sum"] += s.latency_ms
        if s.tokens_per_sec is not None:
            t["tps_n"] += 1
            t["tps_sum"] += s.tokens_per_sec
    return totals


def _apply_counters(entry_id: int, t: dict[str, float], cold: RequestSample | None) -> None:
    updates: dict[str, Any] = {
        "total_requests": F("total_requests") + int(t["requests"]),
        "total_errors": F("total_errors") + int(t["errors"]),
    }
    if cold is not None:
        # Monotonic: only a cold start newer than the one the entry holds replaces it, so a
        # late re-sent batch cannot put an older load time back.
        newer = Q(last_cold_start_at__isnull=True) | Q(last_cold_start_at__lt=cold.started_at)
        updates["last_load_ms"] = Case(
            When(newer, then=Value(cold.load_ms)), default=F("last_load_ms")
        )
        updates["last_cold_start_at"] = Case(
            When(newer, then=Value(cold.started_at)), default=F("last_cold_start_at")
        )
    # Running means over successful calls. In one UPDATE every F() reads the old row,
    # so old_mean * old_ok + new_sum over old_ok + new_ok is exact.
    old_ok = Greatest(F("total_requests") - F("total_errors"), 0)
    if t["ok"]:
        updates["avg_latency_ms"] = (
            Coalesce(F("avg_latency_ms"), 0.0) * old_ok + t["latency_sum"]
        ) / (old_ok + t["ok"])
    if t["tps_n"]:
        updates["avg_tokens_per_sec"] = (
            Coalesce(F("avg_tokens_per_sec"), 0.0) * old_ok + t["tps_sum"]
        ) / (old_ok + t["tps_n"])
    LLMBackend.objects.filter(pk=entry_id).update(**updates)


def _ingest_once(samples: Sequence[dict[str, Any]]) -> tuple[int, int]:
    ids = [s["id"] for s in samples]
    known = set(RequestSample.objects.filter(id__in=ids).values_list("id", flat=True))
    wanted = {s["entry_id"] for s in samples if s.get("entry_id")}
    live = set(LLMBackend.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    # A batch may name an id twice (a router bug): the first copy counts, the rest are
    # duplicates like any re-sent sample.
    first = {s["id"]: s for s in reversed(samples) if s["id"] not in known}
    fresh = [
        RequestSample(**{**s, "entry_id": s.get("entry_id") if s.get("entry_id") in live else None})
        for s in reversed(first.values())
    ]
    RequestSample.objects.bulk_create(fresh)
    cold = _newest_cold_starts(fresh)
    for entry_id, totals in _counter_updates(fresh).items():
        _apply_counters(entry_id, totals, cold.get(entry_id))
    return len(fresh), len(samples) - len(fresh)


def samples_ingest(*, samples: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """Store new samples and add them to their entries' counters; return (new, duplicates)."""
    try:
        with transaction.atomic():
            return _ingest_once(samples)
    except IntegrityError:
        # A concurrent re-send of the same batch won the insert: look again at what is new.
        with transaction.atomic():
            return _ingest_once(samples)
