"""Whatever a client sends, the gateway answers in the client's protocol, in time.

Never a hang, never a plain-text 500: a lone UTF-16 surrogate, a 64 KiB model name or 100k
nested brackets used to give a stream no headers at all, or a plain-text 500.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.protocol_checks import assert_answer_in_protocol

pytestmark = pytest.mark.django_db(transaction=True)

GENERATION_PATHS = ("/api/generate", "/api/chat", "/v1/completions", "/v1/chat/completions")


@pytest.fixture
def http(gateway, auth, entry, openai_url):
    entry("tiny", "mlx", openai_url)
    # A hang is a ReadTimeout here: the answers below all come in milliseconds.
    with httpx.Client(base_url=gateway, headers=auth, timeout=15) as client:
        yield client


def _body(path: str, **fields: Any) -> dict[str, Any]:
    if path in ("/api/chat", "/v1/chat/completions"):
        content = fields.pop("prompt")
        fields["messages"] = [{"role": "user", "content": content}]
    return {"model": "tiny", **fields}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", GENERATION_PATHS)
def test_a_lone_surrogate_is_a_400_naming_the_field(http, path, stream):
    # json.dumps escapes the surrogate as \ud800, as the review's client sent it.
    raw = json.dumps(_body(path, prompt="\ud800", stream=stream)).encode()
    response = http.post(path, content=raw)
    assert response.status_code == 400, response.text
    assert_answer_in_protocol(response, path)
    field = "prompt" if path.endswith("generate") or path == "/v1/completions" else "messages"
    assert f"{field}" in response.text and "lone UTF-16 surrogate" in response.text
    if path.startswith("/v1/"):
        assert response.json()["error"]["param"] == field


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", GENERATION_PATHS)
def test_a_model_name_over_64_kib_is_a_400_naming_model(http, path, stream):
    response = http.post(
        path, json=_body(path, prompt="hi", stream=stream) | {"model": "m" * 65537}
    )
    assert response.status_code == 400, response.text
    assert_answer_in_protocol(response, path)
    assert "model must be at most 255 characters" in response.text


@pytest.mark.parametrize("path", (*GENERATION_PATHS, "/api/show"))
def test_100k_nested_brackets_are_a_400_in_the_protocols_shape(http, path):
    for nested in (b"[" * 100_000, b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        response = http.post(path, content=nested)
        assert response.status_code == 400, response.text
        assert_answer_in_protocol(response, path)
        assert "nested too deeply" in response.text


def test_show_refuses_a_surrogate_and_an_over_long_name(http):
    assert http.post("/api/show", json={"model": "m" * 2000}).status_code == 400
    response = http.post("/api/show", content=b'{"model": "\\udfff"}')
    assert response.status_code == 400 and "model holds a lone UTF-16 surrogate" in response.text


# -- property-based: arbitrary strings and JSON from the client -----------------------------

# Text with lone surrogates too: st.characters() leaves them out unless asked.
_text = st.text(
    st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
    max_size=40,
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)
_messages = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "role": st.sampled_from(["user", "system", "assistant", "developer"]) | _json,
            "content": _text | _json,
            "images": _json,
        },
    ),
    max_size=3,
)
_fields = {
    "model": st.just("tiny") | st.just("../llm-backends/1") | _text | _json,
    "prompt": _text | _json,
    "system": _text | _json,
    "messages": _messages | _json,
    "stream": st.booleans() | _json,
    "options": st.fixed_dictionaries(
        {},
        optional={
            "temperature": st.floats(0, 2) | _json,
            "num_predict": st.integers(-2, 64) | _json,
            "stop": _json,
            "seed": _json,
            "top_p": _json,
        },
    )
    | _json,
    "temperature": st.floats(0, 2) | _json,
    "max_tokens": st.integers(1, 64) | _json,
    "stop": _text | st.lists(_text, max_size=3) | _json,
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": _json}) | _json,
    "n": _json,
    "name": _text | _json,
}
_bodies = st.one_of(
    st.fixed_dictionaries({}, optional=_fields).map(lambda b: json.dumps(b).encode()),
    _json.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.integers(1, 200_000).map(lambda n: b'{"model": "tiny", "prompt": ' + b"[" * n),
)

_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    # The gateway, the admin and the upstream are started once per test, on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("path", (*GENERATION_PATHS, "/api/show"))
@_SETTINGS
@given(raw=_bodies)
def test_any_body_gets_an_answer_in_the_clients_protocol(http, path, raw):
    assert_answer_in_protocol(http.post(path, content=raw), path)


@_SETTINGS
@given(name=st.binary(max_size=40) | _text.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_model_name_in_a_models_url_gets_an_answer_in_openais_protocol(http, name):
    # Percent-encoded, so any byte reaches the gateway (%2F included: a '/' in the name).
    response = http.get("/v1/models/" + quote(name, safe=""))
    assert_answer_in_protocol(response, "/v1/models/x")
