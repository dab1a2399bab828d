"""DRF authentication for bearer tokens that are not service keys.

Order in DEFAULT_AUTHENTICATION_CLASSES: ServiceKeyAuthentication (claims `athk_` keys),
AthenaTokenAuthentication (claims tokens found in Athena's provider table), then
ProviderTokenAuthentication (claims every other bearer token). Errors: 401 with a `detail`
that says what is wrong, 503 when the external provider is down or slow.
"""

from typing import Any

from django.conf import settings
from rest_framework import authentication, exceptions, status
from rest_framework.request import Request

from athena_admin.identity import ratelimit
from athena_admin.identity.bearer import athena_token_principal, provider_token_user
from athena_admin.identity.errors import InvalidToken, ProviderUnavailable
from backends.services import looks_like_service_key


class ProviderUnavailableError(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The identity provider is unavailable; try again later."
    default_code = "identity_provider_unavailable"


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer` header; None for another scheme or none.

    RFC 6750 section 2.1: the scheme is case-insensitive, one token, no spaces in it. Tokens
    in the query string (section 2.3, which django-oidc-provider's userinfo accepts) are
    refused outright: they end up in proxy logs and browser history.
    """
    if "access_token" in request.query_params:
        raise exceptions.AuthenticationFailed(
            "Access tokens in the query string are refused; send `Authorization: Bearer`."
        )
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    credentials = credentials.strip()
    if not credentials:
        raise exceptions.AuthenticationFailed("Empty bearer token.")
    if " " in credentials or "\t" in credentials:
        raise exceptions.AuthenticationFailed("Malformed bearer token: it contains spaces.")
    if len(credentials) > 4096 or not credentials.isascii() or not credentials.isprintable():
        raise exceptions.AuthenticationFailed("Malformed bearer token.")
    return credentials


class _BearerAuthentication(authentication.BaseAuthentication):
    """Shared: the challenge header, and a limit on failed tokens per client address.

    DRF's throttles run after authentication, so they never see a refused token; someone
    guessing tokens is stopped here instead (ATHENA_BEARER_FAILURE_RATE).
    """

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="athena"'

    def refuse(self, request: Request, exc: InvalidToken) -> exceptions.APIException:
        rate = settings.ATHENA_BEARER_FAILURE_RATE
        if rate and not ratelimit.hit("bearer-failure", ratelimit.client_ip(request), rate):
            return exceptions.Throttled(detail="Too many invalid tokens; try again later.")
        return exceptions.AuthenticationFailed(str(exc))

    def check_not_throttled(self, request: Request) -> None:
        rate = settings.ATHENA_BEARER_FAILURE_RATE
        if rate and ratelimit.exhausted("bearer-failure", ratelimit.client_ip(request), rate):
            raise exceptions.Throttled(detail="Too many invalid tokens; try again later.")


class AthenaTokenAuthentication(_BearerAuthentication):
    """Access tokens Athena issued as an OIDC provider (client credentials or login)."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        token = bearer_token(request)
        if token is None or looks_like_service_key(token):
            return None
        self.check_not_throttled(request)
        try:
            return athena_token_principal(token)
        except InvalidToken as exc:
            raise self.refuse(request, exc) from exc


class ProviderTokenAuthentication(_BearerAuthentication):
    """Every other bearer token: the external provider's (401 if none is configured)."""

    def authenticate(self, request: Request) -> tuple[Any, str] | None:
        token = bearer_token(request)
        if token is None or looks_like_service_key(token):
            return None
        self.check_not_throttled(request)
        try:
            return provider_token_user(token), token
        except InvalidToken as exc:
            raise self.refuse(request, exc) from exc
        except ProviderUnavailable as exc:
            raise ProviderUnavailableError(str(exc)) from exc


class RateLimitedBasicAuthentication(authentication.BasicAuthentication):
    """HTTP Basic, with password guessing held to the login pages' rates.

    DRF's throttles run after authentication, so they never see a wrong password. Failures
    are counted per (address, username) at ATHENA_LOGIN_RATE and per address at
    ATHENA_LOGIN_ADDRESS_RATE; past either, every attempt (a right password too) is a 429
    with Retry-After until the window ends, and the password is not even checked.
    """

    def authenticate_credentials(
        self, userid: str, password: str, request: Request | None = None
    ) -> tuple[Any, None]:
        assert request is not None  # DRF always passes it
        pair = ratelimit.login_pair(request, userid)
        address = ratelimit.client_ip(request)
        limits = [
            ("basic-failure", pair, settings.ATHENA_LOGIN_RATE),
            ("basic-failure-address", address, settings.ATHENA_LOGIN_ADDRESS_RATE),
        ]
        for scope, key, rate in limits:
            if ratelimit.exhausted(scope, key, rate):
                raise exceptions.Throttled(
                    wait=ratelimit.seconds_left(rate),
                    detail="Too many failed sign-ins; try again later.",
                )
        try:
            return super().authenticate_credentials(userid, password, request)  # type: ignore[no-any-return]
        except exceptions.AuthenticationFailed:
            for scope, key, rate in limits:
                ratelimit.hit(scope, key, rate)
            raise
