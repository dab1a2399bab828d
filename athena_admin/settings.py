"""Athena's settings: every value from the environment, with embedded development defaults.

Unset everything and Athena runs on a SQLite file with local processes. Set DATABASE_URL
for PostgreSQL, REDIS_URL for the Celery broker, ATHENA_DEBUG=false for production.
"""

import json
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from athena_admin.env import env_bool, env_float, env_int, env_list, env_str
from routing._addresses import DEFAULT_ALLOWED_NETWORKS
from routing.logs import log_format, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("ATHENA_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("ATHENA_DEBUG", True)

SECRET_KEY = env_str("ATHENA_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("ATHENA_SECRET_KEY must be set when ATHENA_DEBUG is false")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-0123456789abcdef"

ALLOWED_HOSTS = env_list(
    "ATHENA_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else []
)
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ATHENA_ALLOWED_HOSTS must be set when ATHENA_DEBUG is false")
CSRF_TRUSTED_ORIGINS = env_list("ATHENA_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc as static files: /api/docs works offline
    "django_celery_beat",
    "backends",
    "mozilla_django_oidc",
    "athena_admin.identity.apps.ProviderConfig",  # oidc_provider
    "athena_admin.identity",
]

MIDDLEWARE = [
    "athena_admin.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "athena_admin.urls"
WSGI_APPLICATION = "athena_admin.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if not env_str("DATABASE_URL"):
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # the embedded default keeps its SQLite file here
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'athena.sqlite3'}",
        conn_max_age=env_int("ATHENA_DB_CONN_MAX_AGE", 60),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"

# A registry body is a few hundred bytes; refuse anything large before parsing it.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("ATHENA_MAX_BODY_BYTES", 1024 * 1024)

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "backends.api.authentication.ServiceKeyAuthentication",
        # Bearer tokens that are not service keys: Athena-issued first (a local look-up),
        # then the external OIDC provider's (an HTTP call, cached). See docs/identity.md.
        "athena_admin.identity.drf.AthenaTokenAuthentication",
        "athena_admin.identity.drf.ProviderTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        # DRF's Basic auth, its failures counted like login attempts (429 past the rate).
        "athena_admin.identity.drf.RateLimitedBasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["backends.api.permissions.RegistryModelPermissions"],
    "DEFAULT_PARSER_CLASSES": [
        "backends.api.parsers.BoundedJSONParser",
        "backends.api.parsers.JSONOrFormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "backends.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "backends.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Athena API",
    "DESCRIPTION": "LLM backend registry, routing look-ups and metrics ingest.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its viewers for whoever may read the API: the view permission, which
    # viewers, operators, service keys and their personal keys hold.
    "SERVE_PERMISSIONS": ["backends.api.permissions.MayReadRegistry"],
    # Served from our own static files (drf-spectacular-sidecar, pinned), never a CDN: a
    # self-hosted machine often cannot reach one, and `@latest` changes under us.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Athena ---
# Where `auto` entries without a fallback chain fall back to (the plan's Ollama default).
ATHENA_DEFAULT_OLLAMA_URL = env_str("ATHENA_DEFAULT_OLLAMA_URL", "http://localhost:11434")
# Networks a backend endpoint may live in: the registry's URLs are fetched by the server,
# so they are an SSRF surface. Loopback and the private LAN ranges a home lab uses.
# The default list is routing's, so the gateway and get_llm_router() default alike.
ATHENA_ALLOWED_BACKEND_NETWORKS = env_list(
    "ATHENA_ALLOWED_BACKEND_NETWORKS", list(DEFAULT_ALLOWED_NETWORKS)
)
# Host names are resolved when checked; set false to accept names that do not resolve yet.
ATHENA_RESOLVE_BACKEND_HOSTS = env_bool("ATHENA_RESOLVE_BACKEND_HOSTS", True)

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
ATHENA_SAMPLE_RETENTION_DAYS = env_int("ATHENA_SAMPLE_RETENTION_DAYS", 30)
# A sample whose model load (Ollama's load_duration) took longer than this many ms is a
# cold start: counted as such, its load time kept on the entry, never a failure.
ATHENA_COLD_START_MS = env_float("ATHENA_COLD_START_MS", 1000.0)
ATHENA_PROBE_TIMEOUT_SECONDS = env_float("ATHENA_PROBE_TIMEOUT_SECONDS", 5.0)

# One format for every Athena process (routing/logs.py): JSON lines when ATHENA_LOG_FORMAT=json
# (the default with ATHENA_DEBUG=false), key=value text otherwise; secrets are redacted and
# each line carries its request id. Celery workers log through this too (hijack off below).
ATHENA_LOG_FORMAT = log_format()
LOGGING = logging_config(
    service=env_str("ATHENA_SERVICE_NAME", "admin"),
    fmt=ATHENA_LOG_FORMAT,
    level=env_str("ATHENA_LOG_LEVEL", "INFO"),
)

# --- Metrics ---
# GET /metrics (admin, gateway, mlx_server) answers loopback clients and service keys only;
# true opens it to anyone (a scraper on a private network without a key).
ATHENA_METRICS_PUBLIC = env_bool("ATHENA_METRICS_PUBLIC", False)
# Models named in the gateway's metric labels; the rest are counted as model="other".
ATHENA_METRICS_MAX_MODELS = env_int("ATHENA_METRICS_MAX_MODELS", 100)

# --- Celery ---
# Broker: CELERY_BROKER_URL, else REDIS_URL when it is set. With neither set, development
# (ATHENA_DEBUG) uses kombu's filesystem transport under var/celery/ so a machine with no
# Redis server still runs worker and beat; production falls back to REDIS_URL's default.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or env_str("REDIS_URL")
if not CELERY_BROKER_URL:
    CELERY_BROKER_URL = "filesystem://" if DEBUG else REDIS_URL
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
    # An unacknowledged acks_late task goes back to the queue after this long (Redis), so a
    # worker killed mid-task is replaced. Must exceed the longest task time limit.
    "visibility_timeout": env_int("ATHENA_CELERY_VISIBILITY_TIMEOUT", 600),
    # How often a worker looks for such messages (one cheap ZRANGE; kombu's default is
    # every 10 x 10 s).
    "unacked_restore_interval": env_int("ATHENA_CELERY_RESTORE_INTERVAL", 10),
    "unacked_restore_throttle": 1,
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _CELERY_DIR = VAR_DIR / "celery"
    CELERY_BROKER_TRANSPORT_OPTIONS |= {
        "data_folder_in": str(_CELERY_DIR / "queue"),
        "data_folder_out": str(_CELERY_DIR / "queue"),
        "control_folder": str(_CELERY_DIR / "control"),
        "processed_folder": str(_CELERY_DIR / "processed"),
        "store_processed": False,
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = env_str("ATHENA_CELERY_QUEUE", "athena")
CELERY_TASK_IGNORE_RESULT = True  # no result backend: tasks write their outcome to the DB
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # acks_late tasks: a worker holds one message at a time
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Every task is idempotent, so a task cut off by a lost broker connection may be redelivered
# (Celery 6's default; 5.x warns without it).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# Probes (backends/probes.py): how many run at once, when a healthy answer counts as slow,
# and Envoy-style outlier detection: `down` after N consecutive failures, back after M.
ATHENA_PROBE_CONCURRENCY = env_int("ATHENA_PROBE_CONCURRENCY", 200)
ATHENA_PROBE_SLOW_MS = env_float("ATHENA_PROBE_SLOW_MS", 2000.0)
ATHENA_PROBE_FAILURES_TO_DOWN = env_int("ATHENA_PROBE_FAILURES_TO_DOWN", 3)
ATHENA_PROBE_SUCCESSES_TO_HEALTHY = env_int("ATHENA_PROBE_SUCCESSES_TO_HEALTHY", 2)
# Backend comparisons (backends/comparisons.py): the repetitions a run may ask for (and the
# admin action's default), and the longest a run may take; a run stops at its limit.
ATHENA_COMPARISON_REPETITIONS = env_int("ATHENA_COMPARISON_REPETITIONS", 3)
ATHENA_COMPARISON_MAX_REPETITIONS = env_int("ATHENA_COMPARISON_MAX_REPETITIONS", 20)
ATHENA_COMPARISON_MAX_SECONDS = env_int("ATHENA_COMPARISON_MAX_SECONDS", 300)
# httpx logs every request at INFO: a probe round would log one line per backend.
LOGGING.setdefault("loggers", {})["httpx"] = {"level": "WARNING"}

# --- Identity ---
# Admin SSO (mozilla-django-oidc, Athena is the relying party), bearer tokens on the API,
# and Athena as an OIDC provider (django-oidc-provider). Walkthrough: docs/identity.md.
AUTHENTICATION_BACKENDS = [
    # Declines at once (returns None) unless ATHENA_OIDC_CLIENT_ID is set.
    "athena_admin.identity.backend.AthenaOIDCBackend",
    # Local username/password: Athena's own provider login page, and the admin's while
    # ATHENA_ADMIN_PASSWORD_LOGIN is true.
    "django.contrib.auth.backends.ModelBackend",
]
ATHENA_ADMIN_PASSWORD_LOGIN = env_bool("ATHENA_ADMIN_PASSWORD_LOGIN", True)

# The external provider (Keycloak, Authentik, Google, or Athena's own /openid/). Every
# endpoint is explicit: Athena makes no discovery call at start-up.
OIDC_RP_CLIENT_ID = env_str("ATHENA_OIDC_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env_str("ATHENA_OIDC_CLIENT_SECRET")
OIDC_OP_ISSUER = env_str("ATHENA_OIDC_ISSUER")  # ours, not the library's: the `iss` we demand
OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("ATHENA_OIDC_AUTHORIZATION_ENDPOINT")
OIDC_OP_TOKEN_ENDPOINT = env_str("ATHENA_OIDC_TOKEN_ENDPOINT")
OIDC_OP_USER_ENDPOINT = env_str("ATHENA_OIDC_USERINFO_ENDPOINT")
OIDC_OP_JWKS_ENDPOINT = env_str("ATHENA_OIDC_JWKS_ENDPOINT")
# RFC 7662 introspection, preferred over userinfo for API bearer tokens when set.
ATHENA_OIDC_INTROSPECTION_ENDPOINT = env_str("ATHENA_OIDC_INTROSPECTION_ENDPOINT")
OIDC_RP_SIGN_ALGO = env_str("ATHENA_OIDC_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = env_str("ATHENA_OIDC_SCOPES", "openid email profile groups")
OIDC_USE_PKCE = env_bool("ATHENA_OIDC_USE_PKCE", True)
# The library's requests calls default to timeout=None (wait forever); this covers them all,
# and Athena's own httpx calls to the provider use the same value.
OIDC_TIMEOUT = env_float("ATHENA_OIDC_TIMEOUT_SECONDS", 5.0)
OIDC_CREATE_USER = env_bool("ATHENA_OIDC_CREATE_USERS", False)
ATHENA_OIDC_MATCH_VERIFIED_EMAIL = env_bool("ATHENA_OIDC_MATCH_VERIFIED_EMAIL", True)
ATHENA_OIDC_GROUPS_CLAIM = env_str("ATHENA_OIDC_GROUPS_CLAIM", "groups")
# JSON object: provider group name -> Athena group. Only these Athena groups are synced.
_groups_map = env_str("ATHENA_OIDC_GROUPS_MAP")
try:
    ATHENA_OIDC_GROUPS_MAP: dict[str, str] = (
        json.loads(_groups_map)
        if _groups_map
        else {"LLM operators": "LLM operators", "LLM viewers": "LLM viewers"}
    )
except json.JSONDecodeError:
    raise ImproperlyConfigured("ATHENA_OIDC_GROUPS_MAP must be a JSON object") from None
ATHENA_OIDC_BEARER_CACHE_SECONDS = env_int("ATHENA_OIDC_BEARER_CACHE_SECONDS", 60)
# Which OIDC access tokens are Athena's (docs/identity.md): the scope, on our own provider's
# tokens and the external provider's; the audience (default: ATHENA_OIDC_CLIENT_ID) on the
# external provider's. Tokens other applications got for a user are refused.
ATHENA_API_SCOPE = env_str("ATHENA_API_SCOPE", "athena.api")
ATHENA_OIDC_API_AUDIENCE = env_str("ATHENA_OIDC_API_AUDIENCE")
LOGIN_REDIRECT_URL = "/admin/"
LOGIN_REDIRECT_URL_FAILURE = "/admin/login/?sso=failed"
LOGOUT_REDIRECT_URL = "/admin/login/"

# Athena as a provider: issuer = SITE_URL + "/openid" (set it behind a proxy so the issuer
# does not depend on the Host header). Access tokens are opaque database rows.
SITE_URL = env_str("ATHENA_SITE_URL") or None
LOGIN_URL = "/accounts/login/"
# Short: the library stores access tokens in plain text (docs/identity.md explains why).
OIDC_TOKEN_EXPIRE = env_int("ATHENA_OIDC_PROVIDER_TOKEN_SECONDS", 300)
# How long after its access token expired a refresh token still works (ours: the library's
# never expire).
ATHENA_OIDC_PROVIDER_REFRESH_SECONDS = env_int("ATHENA_OIDC_PROVIDER_REFRESH_SECONDS", 86400)
OIDC_IDTOKEN_EXPIRE = env_int("ATHENA_OIDC_PROVIDER_IDTOKEN_SECONDS", 300)
OIDC_USERINFO = "athena_admin.identity.claims.provider_userinfo"
OIDC_EXTRA_SCOPE_CLAIMS = "athena_admin.identity.claims.GroupsScopeClaims"
# Its DEBUG messages print client secrets (token endpoint) and tokens: never below INFO.
LOGGING.setdefault("loggers", {})["oidc_provider"] = {"level": "INFO"}

# Rate limits: "<count>/<second|minute|hour>". Login pages and the token endpoint use
# athena_admin.identity.ratelimit; the API uses DRF throttles (off in development).
# Password attempts per (client address, username): login pages, and failed HTTP Basic
# attempts on the API. Per address, for any username (password spraying):
ATHENA_LOGIN_RATE = env_str("ATHENA_LOGIN_RATE", "10/minute")
ATHENA_LOGIN_ADDRESS_RATE = env_str("ATHENA_LOGIN_ADDRESS_RATE", "30/minute")
ATHENA_TOKEN_RATE = env_str("ATHENA_TOKEN_RATE", "30/minute")
ATHENA_RATELIMIT_IP_HEADER = env_str("ATHENA_RATELIMIT_IP_HEADER", "REMOTE_ADDR")
# Refused bearer tokens per client address; DRF's throttles never see those (they run
# after authentication). Off in development so test suites can send bad tokens freely.
ATHENA_BEARER_FAILURE_RATE = env_str("ATHENA_BEARER_FAILURE_RATE", "" if DEBUG else "30/minute")
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = [
    "rest_framework.throttling.AnonRateThrottle",
    "rest_framework.throttling.UserRateThrottle",
]
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
    "anon": env_str("ATHENA_API_ANON_RATE", "" if DEBUG else "60/minute") or None,
    "user": env_str("ATHENA_API_USER_RATE", "" if DEBUG else "6000/minute") or None,
}
# Throttles, the limiter and the bearer cache share it: use Redis with several processes.
# While Redis is unreachable each process falls back to its own memory (athena_admin/cache.py):
# limits stay on, per process, instead of every request failing.
if env_str("ATHENA_CACHE_URL"):
    _cache_timeout = env_float("ATHENA_CACHE_TIMEOUT_SECONDS", 0.5)
    CACHES = {
        "default": {
            "BACKEND": "athena_admin.cache.FailOpenRedisCache",
            "LOCATION": env_str("ATHENA_CACHE_URL"),
            "OPTIONS": {
                "socket_connect_timeout": _cache_timeout,
                "socket_timeout": _cache_timeout,
                "FAIL_OPEN_RETRY_SECONDS": env_float("ATHENA_CACHE_RETRY_SECONDS", 5.0),
            },
        }
    }

# Production behind a TLS-terminating reverse proxy (`check --deploy` passes with these).
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("ATHENA_SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^health$"]  # plain-HTTP probes from the proxy or orchestrator
    SECURE_HSTS_SECONDS = env_int("ATHENA_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("ATHENA_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("ATHENA_HSTS_PRELOAD", True)
# Trust the proxy's scheme header only when told to: "X-Forwarded-Proto" -> https detection.
if env_str("ATHENA_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + env_str("ATHENA_PROXY_SSL_HEADER").upper().replace("-", "_"),
        "https",
    )

# --- Gateway ---
# The Ollama/OpenAI-compatible endpoint (python -m athena_admin.gateway), docs/gateway.md.
ATHENA_GATEWAY_HOST = env_str("ATHENA_GATEWAY_HOST", "127.0.0.1")
ATHENA_GATEWAY_PORT = env_int("ATHENA_GATEWAY_PORT", 11400)
# Processes sharing the port, each with its own router (docs/gateway.md); 1 = one process.
ATHENA_GATEWAY_WORKERS = env_int("ATHENA_GATEWAY_WORKERS", 1)
# Let unauthenticated clients on loopback in (home use). Never behind a local reverse proxy:
# then every client connects from loopback.
ATHENA_GATEWAY_OPEN_ON_LOOPBACK = env_bool("ATHENA_GATEWAY_OPEN_ON_LOOPBACK", False)
# Seconds a validated key is trusted without a database query (a revoked key lasts this long).
ATHENA_GATEWAY_AUTH_CACHE_SECONDS = env_float("ATHENA_GATEWAY_AUTH_CACHE_SECONDS", 30.0)
# Dotted path to a function token -> identity|None for non-key bearer tokens (OIDC), or "".
ATHENA_GATEWAY_BEARER_AUTHENTICATOR = env_str(
    "ATHENA_GATEWAY_BEARER_AUTHENTICATOR",
    "athena_admin.identity.gateway.authenticate_gateway_bearer",
)
