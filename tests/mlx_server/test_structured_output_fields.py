"""Whatever a client puts in `format` / `response_format`, it gets an answer, never a 500.

Property-based: the parsers (structured.py) and the grammar's schema rewrite (grammar.py) are
fed arbitrary JSON values; the real server is fed a sample of them too.
"""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlx_server.errors import InvalidRequest
from mlx_server.grammar import grammar_schema
from mlx_server.structured import JsonConstraint, ollama_format, openai_response_format

from .conftest import MODEL_NAME, ServerProcess

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYWORDS = st.sampled_from(
    ["type", "properties", "items", "anyOf", "enum", "maxLength", "minimum", "not", "required"]
)
SCHEMAS = st.recursive(
    st.sampled_from([{"type": "string"}, {"type": "number"}, {"type": "integer"}, {}]),
    lambda inner: st.dictionaries(KEYWORDS, inner | JSON, max_size=3),
    max_leaves=8,
)
RESPONSE_FORMATS = (
    JSON
    | st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "json_schema"])})
    | st.fixed_dictionaries(
        {"type": st.just("json_schema"), "json_schema": st.fixed_dictionaries({"schema": SCHEMAS})}
    )
)


@given(RESPONSE_FORMATS)
def test_response_format_is_parsed_or_refused_by_name(value: Any) -> None:
    try:
        parsed = openai_response_format({"response_format": value})
    except InvalidRequest as exc:
        assert exc.param is not None and exc.param.startswith("response_format")
        return
    assert parsed is None or isinstance(parsed, JsonConstraint)


@given(JSON | SCHEMAS)
def test_ollama_format_is_parsed_or_refused_by_name(value: Any) -> None:
    try:
        parsed = ollama_format({"format": value})
    except InvalidRequest as exc:
        assert exc.param == "format"
        return
    assert parsed is None or isinstance(parsed, JsonConstraint)


@given(SCHEMAS, JSON)
def test_the_grammar_schema_admits_nothing_the_request_schema_refuses(
    schema: Any, instance: Any
) -> None:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError:
        return
    bounded = grammar_schema(schema)
    if jsonschema.Draft202012Validator(bounded).is_valid(instance):
        assert jsonschema.Draft202012Validator(schema).is_valid(instance)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=RESPONSE_FORMATS)
def test_the_server_answers_any_response_format(server: ServerProcess, value: Any) -> None:
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
        "response_format": value,
    }
    response = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"]["param"].startswith("response_format")
