"""Whatever credentials a client sends, the gateway's check answers who or None, at once.

Property-based (hypothesis): arbitrary X-API-Key and Authorization values, strings shaped
like keys, like JWTs, and garbage; never an exception, never a hang.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from athena_admin.gateway import GatewayConfig
from athena_admin.gateway.auth import Authenticator, presented_credentials, well_formed

pytestmark = pytest.mark.django_db(transaction=True)

credentials = st.one_of(
    st.text(max_size=200),
    st.text(max_size=80).map(lambda s: "athk_" + s),
    st.from_regex(r"athk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_-]{1,30}\.[A-Za-z0-9_-]{0,30}\.[A-Za-z0-9_-]{0,30}", fullmatch=True),
    st.binary(max_size=100).map(lambda b: b.decode("latin-1")),
)
authorization = st.one_of(
    st.none(), credentials, credentials.map(lambda c: "Bearer " + c), st.just("Bearer ")
)
api_key = st.one_of(st.none(), credentials)


def _hook(token: str) -> str | None:
    return "alice" if token == "the-one-good-token" else None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=api_key, header=authorization, host=st.one_of(st.none(), st.text(max_size=40)))
def test_any_credentials_get_an_answer(key: str | None, header: str | None, host: str | None):
    auth = Authenticator(GatewayConfig(bearer_authenticator=_hook))

    async def check() -> None:
        principal = await asyncio.wait_for(auth.authenticate(key, header, host), timeout=10)
        assert principal is None  # nothing here is a real key or the hook's token

    asyncio.run(check())


@given(value=credentials)
def test_the_shape_check_never_raises_and_refuses_long_or_odd_tokens(value: str) -> None:
    verdict = well_formed(value)
    if verdict and not value.startswith("athk_"):
        assert len(value) <= 4096 and value.isascii() and value.isprintable()
    assert presented_credentials(value, None) in (value.strip(), None)
