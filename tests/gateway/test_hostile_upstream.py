"""Whatever an upstream answers, the client gets an answer in its own protocol, in time.

The review's upstream sent valid JSON of the wrong shape (``choices: ["x"]``,
``delta.content: 5``, ``usage: "x"``, Ollama ``response: 5``, ``total_duration: "x"``):
26 of 240 requests hung and 22 got a plain-text 500. Here a real upstream on 127.0.0.1
answers with protocol-shaped JSON whose parts are replaced by anything, with any JSON, or
with any bytes, whole or streamed, with any status.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.protocol_checks import assert_answer_in_protocol
from tests.gateway.scripted_upstream import Script

pytestmark = pytest.mark.django_db(transaction=True)

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)  # fmt: skip


def _mutated(value: Any) -> st.SearchStrategy[Any]:
    """The value, with any part of it (or all) replaced by any JSON."""
    if isinstance(value, dict):
        same = st.fixed_dictionaries({k: _mutated(v) for k, v in value.items()})
    elif isinstance(value, list):
        same = st.lists(_mutated(value[0]), min_size=0, max_size=2)
    else:
        same = st.just(value)
    return st.one_of(same, same, _json)


_USAGE = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
OPENAI_WHOLE = {
    "id": "x",
    "object": "chat.completion",
    "choices": [
        {
            "index": 0,
            "text": "Hi",
            "message": {"role": "assistant", "content": "Hi"},
            "finish_reason": "stop",
        }  # fmt: skip
    ],
    "usage": _USAGE,
}
OPENAI_CHUNK = {"choices": [{"index": 0, "text": "Hi", "delta": {"content": "Hi"}, "finish_reason": None}]}  # fmt: skip
OPENAI_LAST = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": _USAGE}
OLLAMA_PIECE = {"model": "m", "response": "Hi", "message": {"role": "assistant", "content": "Hi"}, "done": False}  # fmt: skip
OLLAMA_FINAL = {
    "model": "m",
    "response": "",
    "message": {"role": "assistant", "content": ""},
    "done": True,
    "done_reason": "stop",
    "total_duration": 5,
    "load_duration": 1,
    "prompt_eval_count": 1,
    "prompt_eval_duration": 1,
    "eval_count": 2,
    "eval_duration": 2,
}


def _sse(events: list[Any], done: bool) -> list[bytes]:
    frames = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
    return frames + ([b"data: [DONE]\n\n"] if done else [])


def _ndjson(lines: list[Any]) -> list[bytes]:
    return [json.dumps(line).encode() + b"\n" for line in lines]


_openai_answers = st.one_of(
    _mutated(OPENAI_WHOLE).map(lambda o: [json.dumps(o).encode()]),
    st.builds(
        _sse,
        st.lists(_mutated(OPENAI_CHUNK), max_size=3).flatmap(
            lambda chunks: _mutated(OPENAI_LAST).map(lambda last: [*chunks, last])
        ),
        st.booleans(),
    ),
)
_ollama_answers = st.one_of(
    _mutated(OLLAMA_FINAL).map(lambda o: [json.dumps(o).encode()]),
    st.lists(_mutated(OLLAMA_PIECE), max_size=3).flatmap(
        lambda pieces: _mutated(OLLAMA_FINAL).map(lambda final: _ndjson([*pieces, final]))
    ),
)
_any_answer = st.one_of(
    _json.map(lambda v: [json.dumps(v).encode()]),
    st.lists(st.binary(max_size=60), max_size=4),
)


@st.composite
def _upstream_answers(draw: st.DrawFn) -> tuple[str, int, dict[str, str], list[bytes]]:
    """(entry to call, status, headers, body chunks)."""
    kind = draw(st.sampled_from(["openai", "ollama"]))
    chunks = draw(st.one_of(_openai_answers if kind == "openai" else _ollama_answers, _any_answer))
    status = draw(st.sampled_from([200, 200, 200, 200, 400, 404, 429, 500, 503]))
    headers = {"content-type": draw(st.sampled_from(["application/json", "text/event-stream", "application/x-ndjson", "text/plain"]))}  # fmt: skip
    if status in (429, 503) and draw(st.booleans()):
        headers["retry-after"] = draw(st.sampled_from(["1", "0", "x", "Wed, 21 Oct 2015 07:28:00 GMT"]))  # fmt: skip
    return f"shape-{kind}", status, headers, chunks


@pytest.fixture
def http(gateway, auth, entry, scripted_url):
    # A short timeout per target: whatever the upstream does, the router gives up in 2 s.
    entry("shape-openai", "openai", scripted_url, timeout_seconds=2)
    entry("shape-ollama", "ollama", scripted_url, timeout_seconds=2)
    with httpx.Client(base_url=gateway, headers=auth, timeout=15) as client:
        yield client


def _request(path: str, model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "stream": stream}
    if path in ("/api/chat", "/v1/chat/completions"):
        body["messages"] = [{"role": "user", "content": "hi"}]
    else:
        body["prompt"] = "hi"
    return body


@settings(
    max_examples=150,
    deadline=None,
    # The gateway, the admin and the upstream are started once per test, on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    answer=_upstream_answers(),
    path=st.sampled_from(["/api/generate", "/api/chat", "/v1/completions", "/v1/chat/completions"]),
    stream=st.booleans(),
)
def test_any_upstream_answer_reaches_the_client_in_its_protocol(http, script: Script, answer, path, stream):  # fmt: skip
    model, script.status, script.headers, script.chunks = answer
    response = http.post(path, json=_request(path, model, stream))
    assert_answer_in_protocol(response, path)


def test_the_reviews_wrong_shapes_each_get_an_answer(http, script: Script):
    shapes = [
        ("shape-openai", {"choices": ["x"], "usage": _USAGE}),
        ("shape-openai", {"choices": [{"delta": {"content": 5}}]}),
        ("shape-openai", {**OPENAI_WHOLE, "usage": "x"}),
        ("shape-ollama", {**OLLAMA_FINAL, "response": 5}),
        ("shape-ollama", {**OLLAMA_FINAL, "total_duration": "x"}),
    ]
    for model, shape in shapes:
        for path in ("/api/generate", "/v1/chat/completions"):
            for stream in (False, True):
                # Streamed, as its protocol frames it; whole, as one body.
                if not stream:
                    script.chunks = [json.dumps(shape).encode()]
                elif model == "shape-openai":
                    script.chunks = _sse([shape], done=True)
                else:
                    script.chunks = _ndjson([shape])
                response = http.post(path, json=_request(path, model, stream))
                assert_answer_in_protocol(response, path)
