"""Thin wrappers around the admin login, the provider's login page and its token endpoint:
rate limits, the SSO button, the password switch, and refusing switched-off clients."""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from oidc_provider.lib.utils.oauth2 import extract_access_token, extract_client_auth
from oidc_provider.models import Client, Token
from oidc_provider.views import TokenView
from oidc_provider.views import userinfo as provider_userinfo

from athena_admin.identity import ratelimit
from athena_admin.identity.backend import sso_configured
from athena_admin.identity.services import client_is_active, tokens_prune_stale


def _too_many(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("Too many attempts; wait a minute and try again.", status=429)
    rates = (settings.ATHENA_LOGIN_RATE, settings.ATHENA_LOGIN_ADDRESS_RATE)
    response["Retry-After"] = str(max(ratelimit.seconds_left(rate) for rate in rates))
    return response


def _login_allowed(request: HttpRequest, scope: str) -> bool:
    """Count a login POST per (address, username) pair, and per address for any username.

    Not per username alone: then anyone failing ten times would lock the real user out.
    """
    username = request.POST.get("username", "")
    return ratelimit.hit(
        scope, ratelimit.client_ip(request), settings.ATHENA_LOGIN_ADDRESS_RATE
    ) and (
        not username
        or ratelimit.hit(
            scope + "-pair", ratelimit.login_pair(request, username), settings.ATHENA_LOGIN_RATE
        )
    )


def admin_login(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    """The admin login page, with the SSO button and the password form as configured."""
    password_login = settings.ATHENA_ADMIN_PASSWORD_LOGIN
    if request.method == "POST":
        if not password_login:
            return HttpResponse("Password login is turned off; use SSO.", status=403)
        if not _login_allowed(request, "admin-login"):
            return _too_many(request)
    context = {
        "sso_enabled": sso_configured(),
        "password_login": password_login,
        "sso_failed": request.GET.get("sso") == "failed",
    }
    return admin.site.login(request, extra_context=context)


class ProviderLoginView(auth_views.LoginView):
    """Where Athena's own provider sends people to sign in (LOGIN_URL)."""

    template_name = "registration/login.html"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not _login_allowed(request, "provider-login"):
            return _too_many(request)
        return super().post(request, *args, **kwargs)


@csrf_exempt
def token(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """The provider's token endpoint, rate limited, refusing switched-off clients.

    django-oidc-provider compares a confidential client's secret with `==`, so a client
    whose secret is blank would accept a blank secret: refuse that here too.
    """
    client_id, _secret = extract_client_auth(request)
    if request.method == "POST" and not ratelimit.hit(
        "token", f"{ratelimit.client_ip(request)}|{client_id}", settings.ATHENA_TOKEN_RATE
    ):
        return JsonResponse(
            {"error": "slow_down", "error_description": "Too many token requests."},
            status=429,
            headers={"Retry-After": "60"},
        )
    client = Client.objects.filter(client_id=client_id).first()
    if request.method == "POST" and client is not None and not _may_get_tokens(client):
        return JsonResponse(
            {"error": "invalid_client", "error_description": "The client is disabled."},
            status=400,
            headers={"Cache-Control": "no-store"},
        )
    if request.method == "POST" and client is not None and _refresh_too_late(request, client):
        return JsonResponse(
            {"error": "invalid_grant", "error_description": "The refresh token has expired."},
            status=400,
            headers={"Cache-Control": "no-store"},
        )
    response = TokenView.as_view()(request, *args, **kwargs)
    if request.method == "POST" and response.status_code == 200:
        tokens_prune_stale()  # at the pace tokens are issued, and bounded by the rate limit
    return response


def _refresh_too_late(request: HttpRequest, client: Client) -> bool:
    """Whether a refresh grant names a token past its refresh window (deleting it if so).

    The library stores refresh tokens in plain text and honours them for ever; a short
    access-token lifetime means little if the row beside it can mint new ones. So a refresh
    token works for ATHENA_OIDC_PROVIDER_REFRESH_SECONDS after its access token expired.
    """
    if request.POST.get("grant_type") != "refresh_token":
        return False
    window = timedelta(seconds=settings.ATHENA_OIDC_PROVIDER_REFRESH_SECONDS)
    late = Token.objects.filter(
        client=client,
        refresh_token=request.POST.get("refresh_token", ""),
        expires_at__lt=timezone.now() - window,
    )
    return late.delete()[0] > 0


def _may_get_tokens(client: Client) -> bool:
    blank_secret = client.client_type == "confidential" and not client.client_secret
    return client_is_active(client) and not blank_secret


def _bearer_error(status: int, code: str, description: str) -> HttpResponse:
    # RFC 6750 section 3: the error goes in the WWW-Authenticate challenge.
    response = HttpResponse(status=status)
    response["WWW-Authenticate"] = f'Bearer error="{code}", error_description="{description}"'
    return response


@csrf_exempt
def userinfo(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """The provider's userinfo, minus three of its faults.

    It reads tokens from the query string (RFC 6750 section 2.3, leaks into logs), answers
    500 for a client-credentials token with the openid scope (no user, no ID token), and
    ignores switched-off clients and inactive users.
    """
    if "access_token" in request.GET:
        return _bearer_error(400, "invalid_request", "Send the token in the Authorization header")
    if request.method == "OPTIONS":
        return provider_userinfo(request, *args, **kwargs)
    row = (
        Token.objects.select_related("client", "user")
        .filter(access_token=extract_access_token(request))
        .first()
    )
    if row is not None:
        if row.user is None or not row.id_token:
            return _bearer_error(401, "invalid_token", "The token belongs to no user")
        if not row.user.is_active or not client_is_active(row.client):
            return _bearer_error(401, "invalid_token", "The token was revoked")
    return provider_userinfo(request, *args, **kwargs)
