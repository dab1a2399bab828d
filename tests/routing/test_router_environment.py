"""get_llm_router() reads the caps, allowed networks and proxy variables; nothing else does.

Proxy variables are honoured as httpx and curl honour them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from routing import InvalidRequest, LLMRouter
from routing._environment import router_options_from_environment
from tests.routing.raw_servers import OLLAMA_ANSWER, RawServer, read_request

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(OLLAMA_ANSWER), OLLAMA_ANSWER)


class Proxy:
    """A raw server standing in for an HTTP proxy: records request lines, answers itself."""

    def __init__(self) -> None:
        self.request_lines: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_request(reader)
            self.request_lines.append(request.split(b"\r\n", 1)[0])
            writer.write(ANSWER)
            await writer.drain()


def routes_file(tmp_path, url: str) -> str:
    path = tmp_path / "routes.json"
    routes = [{"model": "m", "targets": [{"backend_type": "ollama", "endpoint_url": url}]}]
    path.write_text(json.dumps({"routes": routes}))
    return str(path)


async def test_a_backend_behind_http_proxy_is_called_through_the_proxy(tmp_path, monkeypatch):
    proxy = Proxy()
    async with RawServer(proxy.handle) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        # A name only the proxy can reach: a direct connection would fail to resolve it.
        routes = routes_file(tmp_path, "http://ollama.behind-proxy.invalid:11434")
        options = router_options_from_environment(os.environ)
        async with LLMRouter(None, routes_file=routes, metrics=False, **options) as router:
            result = await router.generate(model="m", prompt="hi")
    assert result["response"] == "hi"
    assert proxy.request_lines == [
        b"POST http://ollama.behind-proxy.invalid:11434/api/generate HTTP/1.1"
    ]


async def test_hosts_in_no_proxy_are_called_directly(tmp_path, monkeypatch):
    proxy, backend = Proxy(), Proxy()
    async with RawServer(proxy.handle) as proxy_url, RawServer(backend.handle) as backend_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        options = router_options_from_environment(os.environ)
        routes = routes_file(tmp_path, backend_url)
        async with LLMRouter(None, routes_file=routes, metrics=False, **options) as router:
            await router.generate(model="m", prompt="hi")
    assert proxy.request_lines == []
    assert backend.request_lines == [b"POST /api/generate HTTP/1.1"]


def test_the_environment_sets_caps_networks_and_proxies():
    env = {
        "ATHENA_MAX_ANSWER_BYTES": "1000",
        "ATHENA_MAX_LINE_BYTES": "10",
        "ATHENA_ALLOWED_BACKEND_NETWORKS": "10.0.0.0/8, fd00::/8",
    }
    options = router_options_from_environment(env)
    assert options["max_answer_bytes"] == 1000
    assert options["max_line_bytes"] == 10
    assert options["allowed_networks"] == ["10.0.0.0/8", "fd00::/8"]
    defaults = router_options_from_environment({})
    assert "127.0.0.0/8" in defaults["allowed_networks"]
    assert defaults["max_answer_bytes"] == 32 * 1024 * 1024


@pytest.mark.parametrize("value", ["0", "-5", "lots", "1.5"])
def test_a_bad_cap_in_the_environment_names_the_variable(value):
    with pytest.raises(InvalidRequest, match="ATHENA_MAX_LINE_BYTES must be a positive"):
        router_options_from_environment({"ATHENA_MAX_LINE_BYTES": value})


def test_get_llm_router_passes_the_environment_to_the_router():
    code = (
        "import asyncio, routing\n"
        "r = routing.get_llm_router()\n"
        "async def main():\n"  # a router's client and backends are made per event loop
        "    b = r.backend('ollama')\n"
        "    print(b.max_answer_bytes, b.max_line_bytes, r._session().client._transport._allowed)\n"
        "asyncio.run(main())\n"
    )
    env = {
        "PATH": "",
        "ADMIN_API_URL": "http://127.0.0.1:9",
        "ATHENA_MAX_ANSWER_BYTES": "5000",
        "ATHENA_MAX_LINE_BYTES": "700",
        "ATHENA_ALLOWED_BACKEND_NETWORKS": "10.0.0.0/8",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "5000 700 ('10.0.0.0/8',)"
