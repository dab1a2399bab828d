"""The admin's OIDC login: mozilla-django-oidc's backend, with the checks it leaves out.

The library verifies the ID token's signature, `exp` and nonce; it does not check `iss` or
`aud` (it decodes with verify_aud=False), so a token minted for another client of the same
provider would pass. Users are matched by (issuer, sub), never created unless allowed, and
their Athena groups are re-synced from the groups claim at every login.
"""

import logging
import re
from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from athena_admin.identity.claims import groups_sync
from athena_admin.identity.models import ExternalIdentity

logger = logging.getLogger(__name__)

_USERNAME_OK = re.compile(r"^[\w.@+-]{1,120}$")


def sso_configured() -> bool:
    """Whether admin SSO is switched on (a client id and the endpoints it needs)."""
    return bool(
        settings.OIDC_RP_CLIENT_ID
        and settings.OIDC_OP_AUTHORIZATION_ENDPOINT
        and settings.OIDC_OP_TOKEN_ENDPOINT
    )


class AthenaOIDCBackend(OIDCAuthenticationBackend):
    """Authenticate the authorization-code callback; decline everything else."""

    def authenticate(self, request: Any, **kwargs: Any) -> Any:
        if not sso_configured() or request is None:
            return None
        try:
            return super().authenticate(request, **kwargs)
        except (SuspiciousOperation, jwt.InvalidTokenError, requests.RequestException) as exc:
            # A refused token or a provider that failed or timed out: the callback view then
            # redirects to LOGIN_REDIRECT_URL_FAILURE instead of answering 400 or 500.
            logger.warning("OIDC login refused: %s", exc)
            return None

    # --- the ID token ---

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        payload = super().verify_token(token, **kwargs)
        self.verify_issuer_and_audience(payload)
        return payload

    def verify_issuer_and_audience(self, payload: dict[str, Any]) -> None:
        """OIDC Core 3.1.3.7, steps 2-5: iss, aud, azp; and that exp is present at all."""
        issuer = settings.OIDC_OP_ISSUER
        if not issuer or payload.get("iss") != issuer:
            raise SuspiciousOperation(f"ID token issuer {payload.get('iss')!r} is not {issuer!r}")
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("ID token was issued for another client")
        if len(audiences) > 1 and payload.get("azp") != self.OIDC_RP_CLIENT_ID:
            raise SuspiciousOperation("ID token has several audiences and we are not its azp")
        if "exp" not in payload:  # PyJWT checks exp only when present
            raise SuspiciousOperation("ID token has no expiry")

    def get_userinfo(self, access_token: str, id_token: Any, payload: Any) -> dict[str, Any]:
        """Userinfo merged over the verified ID token claims, refusing a different `sub`."""
        userinfo = super().get_userinfo(access_token, id_token, payload)
        if payload:
            if userinfo.get("sub") != payload.get("sub"):  # OIDC Core 5.3.2
                raise SuspiciousOperation("Userinfo `sub` differs from the ID token's")
            return {**payload, **userinfo}
        return userinfo

    # --- matching users ---

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        return isinstance(claims.get("sub"), str) and bool(claims["sub"])

    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        """By (issuer, sub); else by email, only where the provider says it is verified."""
        User = get_user_model()
        issuer = settings.OIDC_OP_ISSUER
        linked = User.objects.filter(
            external_identities__issuer=issuer, external_identities__subject=claims["sub"]
        )
        if linked.exists():
            return linked
        email = claims.get("email")
        if (
            settings.ATHENA_OIDC_MATCH_VERIFIED_EMAIL
            and email
            and claims.get("email_verified") is True
        ):
            # A user already linked to another subject of this issuer is someone else.
            return User.objects.filter(email__iexact=email).exclude(
                external_identities__issuer=issuer
            )
        return User.objects.none()

    def describe_user_by_claims(self, claims: dict[str, Any]) -> str:
        return f"sub {claims.get('sub')!r}"

    @transaction.atomic
    def create_user(self, claims: dict[str, Any]) -> Any:
        User = get_user_model()
        user = User.objects.create_user(self.get_username(claims), email=claims.get("email", ""))
        return self.update_user(user, claims)

    def get_username(self, claims: dict[str, Any]) -> str:
        """The provider's preferred_username when free, else a stable name from (iss, sub)."""
        User = get_user_model()
        preferred = str(claims.get("preferred_username") or "")
        if _USERNAME_OK.match(preferred) and not User.objects.filter(username=preferred).exists():
            return preferred
        digest = salted_hmac("athena-oidc-username", f"{settings.OIDC_OP_ISSUER}|{claims['sub']}")
        return "sso-" + digest.hexdigest()[:16]

    @transaction.atomic
    def update_user(self, user: Any, claims: dict[str, Any]) -> Any:
        ExternalIdentity.objects.update_or_create(
            issuer=settings.OIDC_OP_ISSUER,
            subject=claims["sub"],
            defaults={"user": user, "last_login_at": timezone.now()},
        )
        groups_sync(user=user, claims=claims)
        return user

    def user_for_claims(self, claims: dict[str, Any]) -> Any:
        """Match (or create, if allowed) and sync the user for already-verified claims."""
        if not self.verify_claims(claims):
            return None
        users = self.filter_users_by_claims(claims)
        if len(users) == 1:
            return self.update_user(users[0], claims)
        if len(users) > 1:
            logger.warning("OIDC login refused: several users match %s", claims.get("email"))
            return None
        if self.get_settings("OIDC_CREATE_USER", False):
            return self.create_user(claims)
        logger.info("OIDC login refused: no user for %s", self.describe_user_by_claims(claims))
        return None

    def get_or_create_user(self, access_token: str, id_token: Any, payload: Any) -> Any:
        claims = self.get_userinfo(access_token, id_token, payload)
        if not self.verify_claims(claims):
            raise SuspiciousOperation("Claims verification failed")
        return self.user_for_claims(claims)
