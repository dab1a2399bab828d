"""The ID token checks the library leaves out (iss, aud, azp) and the ones it makes."""

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import SuspiciousOperation
from django.test import RequestFactory

from athena_admin.identity.backend import AthenaOIDCBackend

ISSUER = "https://idp.example"
CLIENT = "athena"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


PROVIDER_KEY = _key()
OTHER_KEY = _key()


@pytest.fixture
def backend(settings: Any) -> AthenaOIDCBackend:
    settings.OIDC_RP_CLIENT_ID = CLIENT
    settings.OIDC_OP_ISSUER = ISSUER
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{ISSUER}/authorize"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{ISSUER}/token"
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    settings.OIDC_RP_IDP_SIGN_KEY = (
        PROVIDER_KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return AthenaOIDCBackend()


def id_token(key: rsa.RSAPrivateKey = PROVIDER_KEY, **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "u-1", "iat": now, "exp": now + 300}
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode({**claims, "nonce": "n"}, key, algorithm="RS256")


def test_it_accepts_a_token_for_us_from_our_issuer(backend: AthenaOIDCBackend) -> None:
    assert backend.verify_token(id_token(), nonce="n")["sub"] == "u-1"


def test_it_accepts_several_audiences_when_we_are_the_authorized_party(
    backend: AthenaOIDCBackend,
) -> None:
    token = id_token(aud=[CLIENT, "other"], azp=CLIENT)
    assert backend.verify_token(token, nonce="n")["sub"] == "u-1"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "another-client"}, "another client"),
        ({"aud": ["another-client", "third"]}, "another client"),
        ({"aud": [CLIENT, "other"]}, "azp"),
        ({"aud": [CLIENT, "other"], "azp": "other"}, "azp"),
        ({"iss": "https://evil.example"}, "issuer"),
        ({"iss": None}, "issuer"),
        ({"exp": None}, "no expiry"),
    ],
)
def test_it_refuses_tokens_not_meant_for_us(
    backend: AthenaOIDCBackend, overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(SuspiciousOperation, match=reason):
        backend.verify_token(id_token(**overrides), nonce="n")


def test_it_refuses_an_expired_token(backend: AthenaOIDCBackend) -> None:
    expired = id_token(exp=int(time.time()) - 60, iat=int(time.time()) - 400)
    with pytest.raises(jwt.ExpiredSignatureError):
        backend.verify_token(expired, nonce="n")


def test_it_refuses_a_token_signed_with_another_key(backend: AthenaOIDCBackend) -> None:
    with pytest.raises(SuspiciousOperation, match="verification failed"):
        backend.verify_token(id_token(key=OTHER_KEY), nonce="n")


def test_it_refuses_a_wrong_nonce(backend: AthenaOIDCBackend) -> None:
    with pytest.raises(SuspiciousOperation, match="Nonce"):
        backend.verify_token(id_token(), nonce="replayed")


def test_it_refuses_an_unsigned_token(backend: AthenaOIDCBackend) -> None:
    unsigned = jwt.encode({"iss": ISSUER, "aud": CLIENT, "sub": "x"}, None, algorithm="none")
    with pytest.raises(SuspiciousOperation):
        backend.verify_token(unsigned, nonce=None)


def test_a_refusal_during_login_is_a_failed_login_not_an_error(
    backend: AthenaOIDCBackend, monkeypatch: Any
) -> None:
    monkeypatch.setattr(backend, "get_token", lambda payload: {"id_token": id_token(aud="x")})
    request = RequestFactory().get("/oidc/callback/", {"code": "c", "state": "s"})
    request.session = {}  # type: ignore[attr-defined]
    assert backend.authenticate(request, nonce="n") is None


def test_it_declines_when_sso_is_not_configured(settings: Any) -> None:
    settings.OIDC_RP_CLIENT_ID = ""
    request = RequestFactory().get("/oidc/callback/", {"code": "c", "state": "s"})
    assert AthenaOIDCBackend().authenticate(request, nonce="n") is None
