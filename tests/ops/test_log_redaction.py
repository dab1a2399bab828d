"""No key, token or bearer credential is ever written to a log."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest

from routing.logs import KeyValueFormatter, log_format, make_handler, redact

pytestmark = pytest.mark.django_db(transaction=True)

ATHK = "athk_ab12cd34_Zx9-Qw8_Er7Ty6Ui5Op4As3Df2Gh1Jk0Lz"
SK = "sk-proj-4f9Qm2Lx8Rt6Vb1Nc3Hd5Jk7Pw0Ys"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"key {ATHK} refused", ATHK),
        (f"Authorization: Bearer {SK}", SK),
        ("authorization: bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "eyJhbGciOiJSUzI1NiJ9"),
        (f'{{"api_key": "{SK}"}}', SK),
    ],
)
def test_redact_masks_keys_tokens_and_bearer_credentials(text, secret):
    masked = redact(text)
    assert secret not in masked
    assert "[REDACTED]" in masked


def test_messages_arguments_extras_and_tracebacks_are_redacted():
    stream = io.StringIO()
    logger = logging.getLogger("tests.ops.redaction")
    logger.addHandler(make_handler(stream, fmt="json"))
    logger.propagate = False
    try:
        logger.warning("key %s from %s", ATHK, "client")
        logger.warning("header", extra={"authorization": f"Bearer {SK}"})
        try:
            raise RuntimeError(f"upstream refused {SK}")
        except RuntimeError:
            logger.exception("call failed")
    finally:
        logger.handlers.clear()
        logger.propagate = True
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 3
    assert lines[0]["msg"] == "key athk_[REDACTED] from client"
    assert lines[1]["authorization"] == "Bearer [REDACTED]"
    assert "RuntimeError: upstream refused sk-[REDACTED]" in lines[2]["exc"]
    assert ATHK not in stream.getvalue() and SK not in stream.getvalue()


def test_text_format_is_key_value_and_redacted():
    record = logging.LogRecord("gw", logging.INFO, __file__, 1, "sent %s", (ATHK,), None)
    record.status = 200
    record.path = "/api/chat x"
    line = KeyValueFormatter("gateway").format(record)
    assert line.split(" ", 1)[1].startswith("INFO    gw: sent athk_[REDACTED]")
    assert 'service=gateway status=200 path="/api/chat x"' in line


def test_the_format_is_json_in_production_and_text_in_development():
    assert log_format({"ATHENA_DEBUG": "false"}) == "json"
    assert log_format({}) == "text"
    assert log_format({"ATHENA_DEBUG": "true", "ATHENA_LOG_FORMAT": "json"}) == "json"
    with pytest.raises(ValueError, match="ATHENA_LOG_FORMAT"):
        log_format({"ATHENA_LOG_FORMAT": "xml"})


def _leaky_bearer_hook(token: str) -> None:
    # An identity provider client that puts the token in its error: the gateway logs it.
    raise RuntimeError(f"introspection failed for token {token}")


def test_keys_sent_to_the_gateway_and_the_api_never_reach_the_logs(make_gateway, service_key, live_server, entry, ollama_url, captured_logs):  # fmt: skip
    entry("phi", "ollama", ollama_url)
    gateway = make_gateway(bearer_authenticator=_leaky_bearer_hook)
    wrong_key = service_key[:-4] + "xxxx"
    with httpx.Client(base_url=gateway, timeout=10) as client:
        body = {"model": "phi", "prompt": "hi", "stream": False}
        assert client.post("/api/generate", json=body, headers={"Authorization": f"Bearer {service_key}"}).status_code == 200  # fmt: skip
        assert client.post("/api/generate", json=body, headers={"X-API-Key": wrong_key}).status_code == 401  # fmt: skip
        assert client.post("/api/generate", json=body, headers={"Authorization": f"Bearer {SK}"}).status_code == 503  # fmt: skip
        assert client.get("/metrics", headers={"Authorization": f"Bearer {service_key}"}).status_code == 200  # fmt: skip
    with httpx.Client(base_url=live_server.url, timeout=10) as client:
        assert client.get("/api/llm-backends", headers={"Authorization": f"Bearer {wrong_key}"}).status_code == 401  # fmt: skip
        assert client.get("/api/route/phi", headers={"X-API-Key": service_key}).status_code == 200  # fmt: skip
        assert client.post("/api/metrics/samples", json={"samples": "x"}, headers={"Authorization": f"Bearer {service_key}"}).status_code == 400  # fmt: skip

    text = captured_logs.text
    # The leaky hook's error was logged (with its traceback), and redacted.
    failed = [line for line in captured_logs.lines() if line["msg"] == "gateway: bearer token check failed"]  # fmt: skip
    assert failed and "introspection failed for token sk-[REDACTED]" in failed[0]["exc"]
    assert any(line["logger"] == "django.request" for line in captured_logs.lines())
    for secret in (service_key, wrong_key, SK, service_key.split("_", 2)[2]):
        assert secret not in text
