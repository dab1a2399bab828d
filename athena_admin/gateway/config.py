"""The gateway's configuration: one frozen object, read from Django's settings at the edge."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BearerAuthenticator", "GatewayConfig"]

# Called with a bearer token that is not a service key (an OIDC access token); returns who
# it is or None. Sync or async. A user-like answer (with `has_perm`) must hold
# backends.use_llmbackend to use models (else 403); any other truthy value (shown by str())
# is trusted as is.
BearerAuthenticator = Callable[[str], Any | Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything the gateway needs; tests build it directly, ``from_settings`` reads Django's."""

    admin_url: str | None = "http://localhost:8080"
    service_key: str | None = None
    routes_file: str | None = None
    default_ollama_url: str = "http://localhost:11434"
    # Unauthenticated clients on 127.0.0.0/8 and ::1 are let in (home use). Off by default:
    # behind a reverse proxy on the same host every client looks like loopback.
    open_on_loopback: bool = False
    # How long a validated key (or bearer token) is trusted without asking the database.
    auth_cache_seconds: float = 30.0
    # How long a rejected key is remembered, so a client retrying a bad key costs no query.
    auth_negative_cache_seconds: float = 2.0
    # Distinct credential checks one client address may have waiting; more are answered 429
    # at once, so a flood of bogus keys cannot queue up ahead of a good one.
    max_pending_checks: int = 32
    bearer_authenticator: BearerAuthenticator | None = None
    # How long GET /api/tags and /v1/models reuse the admin's route list.
    models_cache_seconds: float = 2.0
    # GET /metrics answers loopback clients and service keys; true: anyone (a private network).
    metrics_public: bool = False
    # Models named in metric labels; the rest share `model="other"` (bounded series).
    metrics_max_models: int = 100
    # prometheus_client's multiprocess directory when several workers share the port
    # (athena_admin.gateway.workers); /metrics then sums every worker's values. None: one process.
    metrics_multiprocess_dir: str | None = None
    router_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls) -> GatewayConfig:
        """Read Django's settings (the ``# --- Gateway ---`` block) and the service key."""
        from django.conf import settings
        from django.utils.module_loading import import_string

        hook_path = getattr(settings, "ATHENA_GATEWAY_BEARER_AUTHENTICATOR", "")
        env = os.environ
        routes_file = env.get("ATHENA_ROUTES_FILE") or None
        admin_url = env.get("ADMIN_API_URL")
        if admin_url is None:
            admin_url = None if routes_file else "http://localhost:8080"
        return cls(
            admin_url=admin_url or None,
            service_key=read_service_key(Path(settings.VAR_DIR) / "service.key"),
            routes_file=routes_file,
            default_ollama_url=settings.ATHENA_DEFAULT_OLLAMA_URL,
            open_on_loopback=settings.ATHENA_GATEWAY_OPEN_ON_LOOPBACK,
            auth_cache_seconds=settings.ATHENA_GATEWAY_AUTH_CACHE_SECONDS,
            bearer_authenticator=import_string(hook_path) if hook_path else None,
            metrics_public=settings.ATHENA_METRICS_PUBLIC,
            metrics_max_models=settings.ATHENA_METRICS_MAX_MODELS,
            router_options=_router_options(settings.ATHENA_ALLOWED_BACKEND_NETWORKS),
        )


def _router_options(allowed_networks: list[str]) -> dict[str, Any]:
    """The router's settings from the environment (answer caps, proxies), as get_llm_router()."""
    from routing._environment import router_options_from_environment

    options = router_options_from_environment(os.environ)
    options["allowed_networks"] = list(allowed_networks)  # the admin's own setting
    return options


def read_service_key(path: Path) -> str | None:
    """Return ATHENA_SERVICE_KEY if set, else the key ``manage.py bootstrap`` wrote to path."""
    key = os.environ.get("ATHENA_SERVICE_KEY")
    if key:
        return key.strip()
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None
