"""A flood of bogus credentials must not delay a good one (issue 14, item 15).

The flood runs in another process (as an attacker's would), sending well-formed but unknown
service keys (each worth a database look-up) and garbage, many at a time; meanwhile a valid
key nobody has used yet is checked from another address.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from athena_admin.gateway import GatewayConfig
from athena_admin.gateway.auth import well_formed
from backends.services import service_key_create

pytestmark = pytest.mark.django_db(transaction=True)

FLOOD = """
import asyncio, secrets, sys, time, httpx
url, seconds = sys.argv[1], float(sys.argv[2])
sent = 0
async def flood(n):
    global sent
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=60) as client:
        while time.monotonic() < stop:
            if n % 3 == 0:  # well-formed: worth a database look-up
                headers = {"X-API-Key": f"athk_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"}
            elif n % 3 == 1:  # no key's shape
                headers = {"X-API-Key": "athk_" + secrets.token_hex(40)}
            else:  # a bearer token: the identity hook asks the provider
                headers = {"Authorization": "Bearer " + secrets.token_hex(16)}
            await client.get(url + "/api/tags", headers=headers)
            sent += 1
async def main():
    await asyncio.gather(*(flood(n) for n in range(150)))
asyncio.run(main())
print(sent)
"""


def _provider_round_trip(token: str) -> None:
    time.sleep(0.05)  # the identity provider's answer to a bogus token: "no"


def test_a_good_key_is_answered_quickly_during_a_flood_of_bad_ones(
    make_gateway: Any, entry: Any, ollama_url: str
) -> None:
    entry("llama", "ollama", ollama_url)
    gateway = make_gateway(bearer_authenticator=_provider_round_trip)
    flood = subprocess.Popen(
        [sys.executable, "-c", FLOOD, gateway, "5"], stdout=subprocess.PIPE, text=True
    )
    waits, statuses = [], []
    try:
        time.sleep(1.5)  # the flood is in full swing
        # Another address on the loopback network: the flood's own address is the one slowed.
        other = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(transport=other, timeout=30) as client:
            for n in range(6):  # a new, uncached key every half second
                good = service_key_create(name=f"newcomer-{n}")[1]
                started = time.monotonic()
                response = client.get(f"{gateway}/api/tags", headers={"X-API-Key": good})
                waits.append(time.monotonic() - started)
                statuses.append(response.status_code)
                time.sleep(0.5)
    finally:
        sent = int(flood.communicate(timeout=60)[0])
    assert statuses == [200] * 6
    assert sent > 300  # it was a flood
    assert max(waits) < 1.0, waits  # generous: the check itself is one indexed query


async def _slow_bearer_hook(token: str) -> str:
    await asyncio.sleep(0.5)  # a slow identity provider: checks stay pending meanwhile
    return "alice"


def test_too_many_checks_from_one_address_are_answered_429_at_once(make_gateway: Any) -> None:
    gateway = make_gateway(max_pending_checks=2, bearer_authenticator=_slow_bearer_hook)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.get(f"{gateway}/v1/models", headers={"Authorization": f"Bearer t{n}"})
                    for n in range(5)
                )
            )

    started = time.monotonic()
    responses = asyncio.run(burst())
    assert sorted(r.status_code for r in responses) == [200, 200, 429, 429, 429]
    for response in responses:
        if response.status_code == 429:
            assert response.headers["retry-after"] == "1"
            assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert time.monotonic() - started < 5


def test_one_credential_sent_many_times_at_once_is_checked_once(make_gateway: Any) -> None:
    calls: list[str] = []

    async def hook(token: str) -> str:
        calls.append(token)
        await asyncio.sleep(0.3)
        return "alice"

    gateway = make_gateway(max_pending_checks=1, bearer_authenticator=hook)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            headers = {"Authorization": "Bearer same-token"}
            answers = await asyncio.gather(
                *(client.get(f"{gateway}/v1/models", headers=headers) for _ in range(5))
            )
            return [a.status_code for a in answers]

    assert asyncio.run(burst()) == [200] * 5
    assert calls == ["same-token"]


def test_malformed_keys_are_refused_without_a_look_up(service_key: str) -> None:
    # The gateway's shape check must accept every key the registry makes.
    assert well_formed(service_key)
    assert well_formed(service_key_create(name="another")[1])
    for bad in ("athk_", "athk_" + "a" * 56, service_key + "x", service_key[:-1] + "!"):
        assert not well_formed(bad), bad
    assert GatewayConfig().max_pending_checks >= 8


def test_a_client_leaving_mid_check_spoils_nothing_for_the_others() -> None:
    from athena_admin.gateway.auth import Authenticator

    calls: list[str] = []

    async def hook(token: str) -> str:
        calls.append(token)
        await asyncio.sleep(0.2)
        return "alice"

    auth = Authenticator(GatewayConfig(bearer_authenticator=hook, max_pending_checks=1))

    async def scenario() -> None:
        leaving = asyncio.create_task(auth.authenticate(None, "Bearer tok", "10.0.0.1"))
        staying = asyncio.create_task(auth.authenticate(None, "Bearer tok", "10.0.0.2"))
        await asyncio.sleep(0.05)
        leaving.cancel()  # its client disconnected
        principal = await staying
        assert principal is not None and principal.name == "alice"
        # The check finished and was remembered; the slot of the first address is free.
        assert await auth.authenticate(None, "Bearer tok", "10.0.0.1") == principal
        assert await auth.authenticate(None, "Bearer other", "10.0.0.1") is not None

    asyncio.run(scenario())
    assert calls == ["tok", "other"]
