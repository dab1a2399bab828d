"""An entry pointing back at the gateway loops no more: X-Athena-Hops grows, 508 ends it.

With the gateway open on loopback, an entry whose endpoint is the gateway itself made every
request call the gateway again, without end. The router sends X-Athena-Hops one higher than
the request it serves; past 4 hops the gateway answers 508 Loop Detected (RFC 5842), and
each gateway on the way back passes the 508 on.
"""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.protocol_checks import assert_answer_in_protocol

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def looping(make_gateway, entry) -> str:
    url = make_gateway(open_on_loopback=True)
    entry("loop", "ollama", url, upstream_model="loop")
    entry("loop-openai", "openai", url, upstream_model="loop-openai")
    return url


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("path", "model", "body"),
    [
        ("/api/generate", "loop", {"prompt": "hi"}),
        ("/api/chat", "loop", CHAT),
        ("/v1/chat/completions", "loop-openai", CHAT),
        ("/v1/completions", "loop-openai", {"prompt": "hi"}),
    ],
)
def test_an_entry_pointing_at_the_gateway_is_a_508(looping, path, model, body, stream):
    response = httpx.post(
        f"{looping}{path}", json={"model": model, "stream": stream, **body}, timeout=30
    )
    assert response.status_code == 508, response.text
    assert_answer_in_protocol(response, path)
    assert "loop detected" in response.text


def test_a_request_that_passed_too_many_gateways_is_refused_at_once(gateway, auth):
    response = httpx.post(
        f"{gateway}/v1/chat/completions",
        json={"model": "any", **CHAT},
        headers={**auth, "X-Athena-Hops": "4"},
    )
    assert response.status_code == 508
    assert response.json()["error"]["code"] == "loop_detected"


def test_a_short_chain_of_gateways_and_a_junk_hop_count_still_route(gateway, auth, entry, ollama_url):  # fmt: skip
    entry("phi", "ollama", ollama_url)
    for hops in ("3", "junk", "99999999999"):
        response = httpx.post(
            f"{gateway}/api/generate",
            json={"model": "phi", "prompt": "hi", "stream": False},
            headers={**auth, "X-Athena-Hops": hops},
        )
        assert response.status_code == 200, (hops, response.text)
