"""Whatever arrives in `tools`, `tool_choice`, message tool calls or the model's output, the tool
code answers (a parse or a 400 naming the field), never another exception."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlx_server.errors import InvalidRequest
from mlx_server.tool_calls import ToolCall, ToolCallScanner
from mlx_server.tools import ToolRequest, parse_tools, tool_fields

from .conftest import MODEL_NAME, ServerProcess

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
FUNCTIONS = st.fixed_dictionaries(
    {"name": st.sampled_from(["f", "g", "bad name", ""]) | JSON},
    optional={"parameters": JSON | st.just({"type": "object"}), "strict": JSON},
)
TOOL_LISTS = JSON | st.lists(
    st.fixed_dictionaries({"type": st.just("function"), "function": FUNCTIONS | JSON}), max_size=3
)
CHOICES = (
    JSON
    | st.sampled_from(["auto", "none", "required"])
    | st.fixed_dictionaries(
        {
            "type": st.just("function"),
            "function": st.fixed_dictionaries({"name": st.text(max_size=3)}),
        }
    )
)


@given(TOOL_LISTS, CHOICES)
def test_tools_are_parsed_or_refused_by_name(tools: Any, choice: Any) -> None:
    try:
        parsed = parse_tools({"tools": tools, "tool_choice": choice}, with_choice=True)
    except InvalidRequest as exc:
        assert exc.param is not None and exc.param.startswith(("tools", "tool_choice"))
        return
    assert isinstance(parsed, ToolRequest)


@given(st.dictionaries(st.sampled_from(["tool_calls", "tool_call_id", "name", "x"]), JSON))
def test_message_tool_fields_are_parsed_or_refused_by_name(message: dict[str, Any]) -> None:
    try:
        tool_fields(message, "messages[0]")
    except InvalidRequest as exc:
        assert exc.param is not None and exc.param.startswith("messages[0].")


MARKED = st.lists(
    st.sampled_from(["<tool_call>", "</tool_call>", "<tool", "_call>", '{"name": "f"', "}", "x "])
    | st.text(max_size=6),
    max_size=8,
)


@given(MARKED, st.integers(min_value=1, max_value=5))
def test_the_scanner_loses_no_text_that_is_not_a_call(parts: list[str], split: int) -> None:
    text = "".join(parts)
    scanner = ToolCallScanner("<tool_call>", "</tool_call>", json.loads)
    shown, calls = "", list[ToolCall]()
    for i in range(0, len(text), split):
        piece, found = scanner.feed(text[i : i + split])
        shown, calls = shown + piece, calls + found
    piece, found = scanner.finish()
    shown, calls = shown + piece, calls + found
    if not calls:
        assert shown == text


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tools=TOOL_LISTS, choice=CHOICES)
def test_the_server_answers_any_tools(server: ServerProcess, tools: Any, choice: Any) -> None:
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
        "tools": tools,
        "tool_choice": choice,
    }
    response = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"]["param"].startswith(("tools", "tool_choice"))
