"""Bearer tokens -> principals, for the DRF API and (later) the gateway.

Three kinds, tried in order: Athena service keys (`athk_...`), access tokens Athena issued
as an OIDC provider (a row in oidc_provider's Token table: no HTTP round trip), and access
tokens from the external provider (its introspection or userinfo endpoint, cached briefly
under a hash of the whole token).
"""

import hashlib
import logging
import threading
from typing import Any

import httpx
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from oidc_provider.models import Token

from athena_admin.identity.backend import AthenaOIDCBackend
from athena_admin.identity.errors import InvalidToken, ProviderUnavailable
from backends.api.authentication import ServicePrincipal
from backends.services import looks_like_service_key, service_key_authenticate

logger = logging.getLogger(__name__)

_MAX_TOKEN_LENGTH = 4096  # a JWT access token with many claims; anything longer is garbage
_INVALID: dict[str, Any] = {}  # cached answer for a token the provider refused

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def authenticate_bearer(token: str) -> Any:
    """Return the user or ServicePrincipal a bearer token stands for.

    Raises InvalidToken (answer 401) or ProviderUnavailable (answer 503).
    """
    if not token:
        raise InvalidToken("Empty bearer token.")
    if len(token) > _MAX_TOKEN_LENGTH or not token.isascii() or not token.isprintable():
        raise InvalidToken("Malformed bearer token.")
    if looks_like_service_key(token):
        return service_key_principal(token)
    found = athena_token_principal(token)
    if found is not None:
        return found[0]
    return provider_token_user(token)


def service_key_principal(raw: str) -> Any:
    """The gateway's twin of backends.api.authentication.ServiceKeyAuthentication."""
    key = service_key_authenticate(raw)
    if key is None:
        raise InvalidToken("Invalid or revoked API key.")
    if key.owner is not None:
        if not key.owner.is_active:
            raise InvalidToken("The key's owner is inactive.")
        return key.owner
    return ServicePrincipal(key.name)


def athena_token_principal(token: str) -> tuple[Any, Token] | None:
    """Return (principal, row) for an access token Athena issued, None if it is not ours."""
    row = (
        Token.objects.select_related("client", "client__athena_state", "user")
        .filter(access_token=token)
        .first()
    )
    if row is None:
        return None
    # The library checks expiry only in its own userinfo view: a row outlives its token.
    if row.has_expired():
        raise InvalidToken("The access token has expired.")
    state = getattr(row.client, "athena_state", None)
    if state is not None and not state.is_active:
        raise InvalidToken("The token's client is deactivated.")
    if row.user is None:  # client-credentials grant: a service, like an ownerless key
        return ServicePrincipal(f"oidc-client-{row.client.client_id}"), row
    if not row.user.is_active:
        raise InvalidToken("The token's user is inactive.")
    return row.user, row


def provider_token_user(token: str) -> Any:
    """Return the user behind an external provider's access token."""
    if not (settings.ATHENA_OIDC_INTROSPECTION_ENDPOINT or settings.OIDC_OP_USER_ENDPOINT):
        raise InvalidToken("Unknown bearer token.")
    cache_key = "identity:bearer:" + hashlib.sha256(token.encode()).hexdigest()
    claims = cache.get(cache_key)
    if claims is None:
        claims, ttl = provider_claims(token)
        cache.set(cache_key, claims, ttl)
    if not claims:
        raise InvalidToken("The identity provider does not accept this token.")
    user = AthenaOIDCBackend().user_for_claims(claims)
    if user is None or not user.is_active:
        raise InvalidToken("No active Athena user for this token.")
    return user


def provider_claims(token: str) -> tuple[dict[str, Any], int]:
    """Ask the provider about a token: (claims or {} if refused, seconds to cache that)."""
    ttl = settings.ATHENA_OIDC_BEARER_CACHE_SECONDS
    if settings.ATHENA_OIDC_INTROSPECTION_ENDPOINT:
        answer = _call(
            "POST",
            settings.ATHENA_OIDC_INTROSPECTION_ENDPOINT,
            data={"token": token, "token_type_hint": "access_token"},
            auth=(settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET),
        )
        claims = introspected_claims(answer)
        if claims and isinstance(claims.get("exp"), int | float):
            ttl = max(0, min(ttl, int(claims["exp"] - timezone.now().timestamp())))
        return claims, ttl
    answer = _call(
        "GET", settings.OIDC_OP_USER_ENDPOINT, headers={"Authorization": f"Bearer {token}"}
    )
    if answer is None or not isinstance(answer.get("sub"), str):
        return _INVALID, ttl
    return answer, ttl


def introspected_claims(answer: dict[str, Any] | None) -> dict[str, Any]:
    """RFC 7662 section 2.2: keep an active token meant for us, from our issuer."""
    if not answer or answer.get("active") is not True or not isinstance(answer.get("sub"), str):
        return _INVALID
    if "iss" in answer and answer["iss"] != settings.OIDC_OP_ISSUER:
        return _INVALID
    audience = answer.get("aud")
    audiences = set(audience if isinstance(audience, list) else [audience])
    audiences |= {answer.get("azp"), answer.get("client_id")}
    if settings.OIDC_RP_CLIENT_ID not in audiences:
        return _INVALID
    if isinstance(answer.get("exp"), int | float) and answer["exp"] <= timezone.now().timestamp():
        return _INVALID
    return answer


def _call(method: str, url: str, **kwargs: Any) -> dict[str, Any] | None:
    """One provider call: JSON on 200, None on 401/403, ProviderUnavailable otherwise."""
    try:
        response = _http().request(method, url, timeout=settings.OIDC_TIMEOUT, **kwargs)
    except httpx.TimeoutException as exc:
        logger.warning("OIDC provider timed out: %s %s", method, url)
        raise ProviderUnavailable("The identity provider did not answer in time.") from exc
    except httpx.HTTPError as exc:
        logger.warning("OIDC provider unreachable: %s %s: %s", method, url, exc)
        raise ProviderUnavailable("The identity provider is unreachable.") from exc
    if response.status_code in (400, 401, 403):
        return None
    if response.status_code != 200:
        logger.warning("OIDC provider answered %s: %s %s", response.status_code, method, url)
        raise ProviderUnavailable(f"The identity provider answered {response.status_code}.")
    try:
        body = response.json()
    except ValueError as exc:
        raise ProviderUnavailable("The identity provider answered something not JSON.") from exc
    return body if isinstance(body, dict) else None


def _http() -> httpx.Client:
    """One pooled client per process; the timeout is given per call."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(follow_redirects=False)
        return _client
