"""Bearer tokens -> principals, for the DRF API and the gateway.

Three kinds, tried in order: Athena service keys (`athk_...`), access tokens Athena issued
as an OIDC provider (a row in oidc_provider's Token table: no HTTP round trip), and access
tokens from the external provider (its introspection or userinfo endpoint, cached briefly
under a hash of the whole token).

An OIDC access token is accepted only if it was issued for Athena: a provider hands tokens
to every client it serves, and a token some other application got for a user (scope
`openid`) must not act with that user's rights here. "For Athena" means the scope
ATHENA_API_SCOPE (`athena.api`) for our own tokens, and our audience or that scope for the
external provider's (docs/identity.md, "Which tokens are Athena's").
"""

import hashlib
import logging
import threading
from typing import Any

import httpx
import jwt
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
    if not issued_for_athena(row):
        raise InvalidToken(
            f"The access token was not issued for Athena's API (scope {settings.ATHENA_API_SCOPE})."
        )
    state = getattr(row.client, "athena_state", None)
    if state is not None and not state.is_active:
        raise InvalidToken("The token's client is deactivated.")
    if row.user is None:  # client-credentials grant: a service, like an ownerless key
        return ServicePrincipal(f"oidc-client-{row.client.client_id}"), row
    if not row.user.is_active:
        raise InvalidToken("The token's user is inactive.")
    return row.user, row


def issued_for_athena(row: Token) -> bool:
    """Whether one of our tokens carries the API scope, from a client allowed to have it.

    Both: the library's authorize endpoint grants whatever scope a client asks for (only
    its client-credentials grant filters by the client's scopes), so a token's scope alone
    would let any registered client ask for `athena.api`.
    """
    scope = settings.ATHENA_API_SCOPE
    return scope in row.scope and scope in row.client.scope


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
    # Userinfo says who, never for which client: only a signed JWT access token can say that.
    access = signed_access_claims(token)
    if access is None or not meant_for_athena(access):
        return _INVALID, ttl
    ttl = max(0, min(ttl, int(access["exp"] - timezone.now().timestamp())))
    answer = _call(
        "GET", settings.OIDC_OP_USER_ENDPOINT, headers={"Authorization": f"Bearer {token}"}
    )
    if answer is None or answer.get("sub") != access.get("sub"):
        return _INVALID, ttl
    return answer, ttl


def introspected_claims(answer: dict[str, Any] | None) -> dict[str, Any]:
    """RFC 7662 section 2.2: keep an active token meant for us, from our issuer."""
    if not answer or answer.get("active") is not True or not isinstance(answer.get("sub"), str):
        return _INVALID
    if "iss" in answer and answer["iss"] != settings.OIDC_OP_ISSUER:
        return _INVALID
    if not meant_for_athena(answer):
        return _INVALID
    if isinstance(answer.get("exp"), int | float) and answer["exp"] <= timezone.now().timestamp():
        return _INVALID
    return answer


def api_audience() -> str:
    return str(settings.ATHENA_OIDC_API_AUDIENCE or settings.OIDC_RP_CLIENT_ID)


def meant_for_athena(claims: dict[str, Any]) -> bool:
    """Our audience in `aud`/`azp`/`client_id` (RFC 9068 section 2.2), or our API scope.

    The scope is enough only because a provider gives a client the scopes it was assigned:
    assign ATHENA_API_SCOPE to the clients that may call Athena, and to no other.
    """
    audience = claims.get("aud")
    audiences = set(audience if isinstance(audience, list) else [audience])
    audiences |= {claims.get("azp"), claims.get("client_id")}
    if api_audience() in audiences:
        return True
    scope = claims.get("scope", claims.get("scp"))
    scopes = scope.split() if isinstance(scope, str) else scope if isinstance(scope, list) else []
    return settings.ATHENA_API_SCOPE in scopes


# Signatures a provider's JWKS can verify; never HS*/none (no shared secret with the provider).
_ASYMMETRIC = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
_jwks_clients: dict[str, jwt.PyJWKClient] = {}


def signed_access_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT access token signed by the provider's JWKS key; None otherwise.

    An opaque token (not a JWT) says nothing about its client: None, and the operator is
    told (docs/identity.md) to configure introspection for such providers.
    """
    if token.count(".") != 2 or not settings.OIDC_OP_JWKS_ENDPOINT:
        return None
    try:
        key = _jwks(settings.OIDC_OP_JWKS_ENDPOINT).get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=_ASYMMETRIC,
            issuer=settings.OIDC_OP_ISSUER or None,
            options={"verify_aud": False, "require": ["exp", "sub"]},
        )
    except jwt.PyJWKClientConnectionError as exc:
        logger.warning("OIDC provider's JWKS unreachable: %s", exc)
        raise ProviderUnavailable("The identity provider's keys are unreachable.") from exc
    except (jwt.PyJWKClientError, jwt.InvalidTokenError):
        return None
    return claims


def _jwks(url: str) -> jwt.PyJWKClient:
    with _client_lock:
        if url not in _jwks_clients:
            _jwks_clients[url] = jwt.PyJWKClient(
                url, cache_keys=True, lifespan=300, timeout=settings.OIDC_TIMEOUT
            )
        return _jwks_clients[url]


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
