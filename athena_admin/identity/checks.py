"""System checks: cross-setting mistakes in identity configuration, caught at start-up."""

import logging
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from athena_admin.identity import ratelimit


@register("identity")
def check_sso_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if settings.OIDC_RP_CLIENT_ID:
        needed = {
            "ATHENA_OIDC_ISSUER": settings.OIDC_OP_ISSUER,
            "ATHENA_OIDC_AUTHORIZATION_ENDPOINT": settings.OIDC_OP_AUTHORIZATION_ENDPOINT,
            "ATHENA_OIDC_TOKEN_ENDPOINT": settings.OIDC_OP_TOKEN_ENDPOINT,
            "ATHENA_OIDC_USERINFO_ENDPOINT": settings.OIDC_OP_USER_ENDPOINT,
        }
        if settings.OIDC_RP_SIGN_ALGO.startswith(("RS", "ES")):
            needed["ATHENA_OIDC_JWKS_ENDPOINT"] = settings.OIDC_OP_JWKS_ENDPOINT
        else:
            needed["ATHENA_OIDC_CLIENT_SECRET"] = settings.OIDC_RP_CLIENT_SECRET
        missing = [name for name, value in needed.items() if not value]
        if missing:
            errors.append(
                Error(
                    f"ATHENA_OIDC_CLIENT_ID is set but {', '.join(missing)} is not.",
                    id="identity.E001",
                )
            )
    elif not settings.ATHENA_ADMIN_PASSWORD_LOGIN:
        errors.append(
            Warning(
                "ATHENA_ADMIN_PASSWORD_LOGIN is false and no SSO is configured: "
                "nobody can sign in to the admin.",
                id="identity.W001",
            )
        )
    if not isinstance(settings.ATHENA_OIDC_GROUPS_MAP, dict) or not all(
        isinstance(k, str) and isinstance(v, str)
        for k, v in settings.ATHENA_OIDC_GROUPS_MAP.items()
    ):
        errors.append(
            Error("ATHENA_OIDC_GROUPS_MAP must map strings to strings.", id="identity.E003")
        )
    scope = settings.ATHENA_API_SCOPE
    if not scope or any(c.isspace() for c in scope):
        errors.append(
            Error(
                f"ATHENA_API_SCOPE must be one scope name, e.g. athena.api (got {scope!r}).",
                hint="Only access tokens carrying it are accepted (docs/identity.md).",
                id="identity.E005",
            )
        )
    rates = ("ATHENA_LOGIN_RATE", "ATHENA_LOGIN_ADDRESS_RATE", "ATHENA_TOKEN_RATE")
    for name in (*rates, "ATHENA_BEARER_FAILURE_RATE"):
        rate = getattr(settings, name)
        if name == "ATHENA_BEARER_FAILURE_RATE" and not rate:
            continue  # off
        try:
            ratelimit.parse_rate(rate)
        except ImproperlyConfigured as exc:
            errors.append(Error(f"{name}: {exc}", id="identity.E004"))
    return errors


@register("identity")
def check_provider_logging(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    # django-oidc-provider logs the client's stored secret at DEBUG on a failed token request.
    if logging.getLogger("oidc_provider").isEnabledFor(logging.DEBUG):
        return [
            Error(
                "The oidc_provider logger is at DEBUG: it would log client secrets.",
                hint="Keep LOGGING['loggers']['oidc_provider'] at INFO or above.",
                id="identity.E002",
            )
        ]
    return []


@register("identity", deploy=True)
def check_production_identity(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    warnings: list[CheckMessage] = []
    if not settings.SITE_URL:
        warnings.append(
            Warning(
                "ATHENA_SITE_URL is not set: the provider's issuer follows the Host header.",
                hint="Set ATHENA_SITE_URL to the public https URL, e.g. https://athena.example",
                id="identity.W002",
            )
        )
    endpoints = [
        settings.OIDC_OP_AUTHORIZATION_ENDPOINT,
        settings.OIDC_OP_TOKEN_ENDPOINT,
        settings.OIDC_OP_USER_ENDPOINT,
        settings.OIDC_OP_JWKS_ENDPOINT,
        settings.ATHENA_OIDC_INTROSPECTION_ENDPOINT,
    ]
    if settings.SECURE_SSL_REDIRECT and not settings.SECURE_PROXY_SSL_HEADER:
        warnings.append(
            Warning(
                "SECURE_SSL_REDIRECT is on but ATHENA_PROXY_SSL_HEADER is not set: behind a "
                "TLS-terminating proxy every request would redirect to itself.",
                hint="Set ATHENA_PROXY_SSL_HEADER=X-Forwarded-Proto (a header the proxy "
                "overwrites), or ATHENA_SECURE_SSL_REDIRECT=false if Athena terminates TLS.",
                id="identity.W004",
            )
        )
    if any(url.startswith("http://") for url in endpoints):
        warnings.append(Warning("An ATHENA_OIDC_* endpoint uses plain http.", id="identity.W003"))
    return warnings
