"""The router checks a backend's resolved address when it connects, not only when it is saved.

A registry entry's host name was checked when the entry was saved; by the time the router
connects, DNS may answer differently (DNS rebinding). ``localhost`` stands for such a name
here: it resolves to loopback, which the allowed networks below leave out.
"""

from __future__ import annotations

import pytest

from routing import AllTargetsFailed, InvalidRequest, LLMRouter
from tests.routing.conftest import target
from tests.routing.raw_servers import OLLAMA_ANSWER, RawServer, answering

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(OLLAMA_ANSWER), OLLAMA_ANSWER)


async def test_a_name_resolving_outside_the_allowed_networks_is_never_connected_to(
    make_router, admin_state
):
    refused = RawServer(answering(ANSWER, ANSWER))  # on 127.0.0.1, which `localhost` names
    allowed = RawServer(answering(ANSWER, ANSWER), host="127.0.0.2")
    async with refused as refused_url, allowed as allowed_url:
        port = refused_url.rsplit(":", 1)[1]
        by_name = f"http://localhost:{port}"
        admin_state.set_route(
            "m", target("ollama", by_name, "up"), target("ollama", allowed_url, "up")
        )
        admin_state.set_route("only", target("ollama", by_name, "up"))
        # The admin (on 127.0.0.1 too) is no backend: its look-ups are not checked.
        router = make_router(allowed_networks=["127.0.0.2/32"])
        result = await router.generate(model="m", prompt="hi")
        assert result["fallback"] is True
        assert result["endpoint_url"] == allowed_url
        with pytest.raises(AllTargetsFailed) as failed:
            await router.generate(model="only", prompt="hi")
    assert refused.connections == 0
    failure = failed.value.failures[0]
    assert failure.kind == "connect"
    assert "outside the allowed networks" in failure.reason


async def test_metadata_addresses_are_refused_whatever_the_allowed_networks(
    make_router, admin_state
):
    admin_state.set_route("meta", target("ollama", "http://169.254.169.254", "up"))
    router = make_router(allowed_networks=["0.0.0.0/0", "::/0"])
    with pytest.raises(AllTargetsFailed) as failed:
        await router.generate(model="meta", prompt="hi")
    failure = failed.value.failures[0]
    assert failure.kind == "connect"
    assert "169.254.169.254 is never allowed" in failure.reason


async def test_a_router_without_allowed_networks_still_refuses_metadata(make_router, admin_state):
    admin_state.set_route("meta", target("openai", "http://[::ffff:169.254.169.254]:80", "up"))
    with pytest.raises(AllTargetsFailed, match="never allowed"):
        await make_router().generate(model="meta", prompt="hi")


@pytest.mark.parametrize(
    ("networks", "message"),
    [(["10.0.0.0/8", "not-a-net"], "'not-a-net' is not a network"), ("10.0.0.0/8", "one string")],
)
def test_bad_allowed_networks_are_refused_when_the_router_is_made(networks, message):
    with pytest.raises(InvalidRequest, match=message):
        LLMRouter(None, allowed_networks=networks)
