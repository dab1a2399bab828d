"""Athena's settings: every value from the environment, with embedded development defaults.

Unset everything and Athena runs on a SQLite file with local processes. Set DATABASE_URL
for PostgreSQL, REDIS_URL for the Celery broker, ATHENA_DEBUG=false for production.
"""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from athena_admin.env import env_bool, env_float, env_int, env_list, env_str

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
    "backends",
]

MIDDLEWARE = [
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

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "backends.api.authentication.ServiceKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["backends.api.permissions.RegistryModelPermissions"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "backends.api.parsers.JSONOrFormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "backends.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Athena API",
    "DESCRIPTION": "LLM backend registry, routing look-ups and metrics ingest.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}

# --- Athena ---
# Where `auto` entries without a fallback chain fall back to (the plan's Ollama default).
ATHENA_DEFAULT_OLLAMA_URL = env_str("ATHENA_DEFAULT_OLLAMA_URL", "http://localhost:11434")
# Networks a backend endpoint may live in: the registry's URLs are fetched by the server,
# so they are an SSRF surface. Loopback and the private LAN ranges a home lab uses.
ATHENA_ALLOWED_BACKEND_NETWORKS = env_list(
    "ATHENA_ALLOWED_BACKEND_NETWORKS",
    ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
)
# Host names are resolved when checked; set false to accept names that do not resolve yet.
ATHENA_RESOLVE_BACKEND_HOSTS = env_bool("ATHENA_RESOLVE_BACKEND_HOSTS", True)

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
ATHENA_SAMPLE_RETENTION_DAYS = env_int("ATHENA_SAMPLE_RETENTION_DAYS", 30)
ATHENA_PROBE_TIMEOUT_SECONDS = env_float("ATHENA_PROBE_TIMEOUT_SECONDS", 5.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("ATHENA_LOG_LEVEL", "INFO")},
}
