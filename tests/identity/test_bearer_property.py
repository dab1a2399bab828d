"""Whatever bearer token arrives, identity answers with a user or an IdentityError.

Property-based (hypothesis): garbage, strings shaped like JWTs, and JWTs with arbitrary
headers and claims (unsigned, signed by another key, or by the provider's key but with odd
claims) go through `authenticate_bearer` with the external provider configured.
"""

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from athena_admin.identity import IdentityError, authenticate_bearer

pytestmark = pytest.mark.django_db

_OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
claims = st.dictionaries(
    st.sampled_from(["iss", "sub", "aud", "azp", "scope", "exp", "iat", "nbf", "client_id"]),
    json_values,
)


def _segment(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@st.composite
def tokens(draw: Any, provider: Any) -> str:
    kind = draw(st.sampled_from(["text", "shaped", "unsigned", "other-key", "provider-key"]))
    if kind == "text":
        return str(draw(st.text(min_size=1, max_size=300)))
    if kind == "shaped":
        header = draw(st.dictionaries(st.sampled_from(["alg", "kid", "typ", "jku"]), json_values))
        return f"{_segment(header)}.{_segment(draw(claims))}.{draw(st.text(max_size=20))}"
    # Signed over raw bytes: jwt.encode would refuse the odd claims a client can still send.
    payload = json.dumps(draw(claims)).encode()
    if kind == "unsigned":
        return jwt.PyJWS().encode(payload, key=None, algorithm="none")
    key = _OTHER_KEY if kind == "other-key" else provider._key
    return jwt.PyJWS().encode(payload, key, algorithm="RS256", headers={"kid": "k1"})


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_token_is_a_user_or_an_identity_error(fake_provider: Any, data: Any) -> None:
    token = data.draw(tokens(fake_provider))
    try:
        authenticate_bearer(token)
    except IdentityError:
        return
    # Accepted: only a provider-signed token for us, with claims the provider vouches for.
    raise AssertionError(f"accepted {token!r}")
