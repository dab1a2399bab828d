"""The gateway's router gets the same caps, allowed networks and proxies as get_llm_router()."""

from __future__ import annotations

from athena_admin.gateway.config import GatewayConfig


def test_the_gateway_router_options_come_from_settings_and_environment(settings, monkeypatch):
    settings.ATHENA_ALLOWED_BACKEND_NETWORKS = ["10.1.0.0/16"]
    monkeypatch.setenv("ATHENA_MAX_ANSWER_BYTES", "123456")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.lan:3128")
    monkeypatch.setenv("NO_PROXY", "10.1.0.0/16")
    options = GatewayConfig.from_settings().router_options
    assert options["allowed_networks"] == ["10.1.0.0/16"]
    assert options["max_answer_bytes"] == 123456
    assert options["proxies"]["http://"] == "http://proxy.lan:3128"
