"""Whatever the router raises, before or after the first byte, the client gets its protocol.

Once the router turns every failure into a RoutingError, a real upstream can no longer make
it raise anything else; a router that does (a bug) is the edge case only an in-process
stand-in shows. The gateway itself runs for real, under uvicorn on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from athena_admin.gateway import GatewayConfig
from routing import LLMRouter, Route, Started, StreamEvent, Target, TextDelta
from tests.gateway.conftest import serve_gateway
from tests.gateway.protocol_checks import assert_answer_in_protocol

TOKEN = "a-bearer-token"
TARGET = Target(backend_type="mlx", endpoint_url="http://127.0.0.1:9", upstream_model="m")


class BuggyRouter(LLMRouter):
    """A router that fails with a plain exception: when called, at once, or after some text."""

    fails = "at_once"

    async def route(self, model: str) -> Route:
        return Route(model=model, targets=(TARGET,), source="file")

    def events(self, request: Any) -> AsyncIterator[StreamEvent]:  # type: ignore[override]
        if self.fails == "when_called":
            raise RuntimeError("secret-detail")
        return self._failing_events()

    async def _failing_events(self) -> AsyncIterator[StreamEvent]:
        if self.fails == "after_text":
            yield Started(TARGET, False)
            yield TextDelta("partial")
        raise KeyError("secret-detail")  # e.g. a malformed upstream answer used to raise this


@pytest.fixture
def buggy() -> tuple[str, BuggyRouter]:
    router = BuggyRouter(None, metrics=False)
    config = GatewayConfig(admin_url=None, bearer_authenticator=lambda t: "tester" if t == TOKEN else None)  # fmt: skip
    server = serve_gateway(config, router=router)
    yield server.url, router
    server.stop()


REQUESTS = [
    ("/api/generate", {"prompt": "hi"}),
    ("/api/chat", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/completions", {"prompt": "hi"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
]


@pytest.mark.parametrize("fails", ["when_called", "at_once", "after_text"])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("path", "body"), REQUESTS)
def test_a_plain_exception_from_the_router_ends_the_answer_in_the_protocol(buggy, path, body, stream, fails):  # fmt: skip
    url, router = buggy
    router.fails = fails
    response = httpx.post(
        f"{url}{path}",
        json={"model": "m", "stream": stream, **body},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,  # a hang is a ReadTimeout
    )
    assert_answer_in_protocol(response, path)
    assert "internal error in the Athena gateway" in response.text
    assert "secret-detail" not in response.text  # the detail is in the log, not the answer
    if stream and fails == "after_text":
        assert response.status_code == 200 and "partial" in response.text
    else:
        assert response.status_code == 500
