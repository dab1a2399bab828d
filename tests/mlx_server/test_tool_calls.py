"""Tool calling: tools rendered by the chat template, calls found and returned in each protocol's
shape, and enforced calls (tool_choice "required" / a named function / strict tools) whose
arguments always validate, even from the random-weight model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import ollama
import openai
import pytest
from openai.types.chat import ChatCompletionMessage, ChatCompletionMessageFunctionToolCall

from mlx_server.answer import Parts
from mlx_server.ollama_routes import message
from mlx_server.tool_calls import ToolCallScanner

from .conftest import MODEL_NAME, ServerProcess, start_server

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 8},
        "unit": {"enum": ["C", "F"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
}
ADD = {
    "type": "object",
    "properties": {
        "a": {"type": "number", "minimum": -10, "maximum": 10},
        "b": {"type": "number", "minimum": -10, "maximum": 10},
    },
    "required": ["a", "b"],
}
PARAMETERS = {"get_weather": WEATHER, "add": ADD}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": name, "parameters": schema}}
    for name, schema in PARAMETERS.items()
]
MESSAGES: list[Any] = [{"role": "user", "content": "What is the weather in Oslo?"}]


def valid_call(name: str, arguments: dict[str, Any]) -> bool:
    """Tell whether a call names a known tool with arguments valid for it."""
    if name not in PARAMETERS:
        return False
    try:
        jsonschema.validate(arguments, PARAMETERS[name])
    except jsonschema.ValidationError:
        return False
    return True


def function_calls(message: ChatCompletionMessage) -> list[ChatCompletionMessageFunctionToolCall]:
    """Return a message's tool calls, all of which must be function calls."""
    calls = message.tool_calls or []
    assert all(isinstance(c, ChatCompletionMessageFunctionToolCall) for c in calls)
    return [c for c in calls if isinstance(c, ChatCompletionMessageFunctionToolCall)]


@pytest.fixture
def openai_client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


def test_required_calls_validate_twenty_times(openai_client: openai.OpenAI) -> None:
    results = []
    for seed in range(20):
        answer = openai_client.chat.completions.create(
            model=MODEL_NAME,
            messages=MESSAGES,
            tools=TOOLS,
            tool_choice="required",
            temperature=1,
            seed=seed,
            max_tokens=200,
        )
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls"
        (call,) = function_calls(choice.message)
        assert call.type == "function" and call.id.startswith("call_")
        results.append(valid_call(call.function.name, json.loads(call.function.arguments)))
    assert results == [True] * 20


def test_a_named_function_is_the_one_called(openai_client: openai.OpenAI) -> None:
    for seed in range(5):
        answer = openai_client.chat.completions.create(
            model=MODEL_NAME,
            messages=MESSAGES,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            seed=seed,
            max_tokens=200,
        )
        (call,) = function_calls(answer.choices[0].message)
        assert call.function.name == "get_weather"
        assert valid_call("get_weather", json.loads(call.function.arguments))


def test_a_call_streams_as_deltas_the_client_assembles(openai_client: openai.OpenAI) -> None:
    stream = openai_client.chat.completions.create(
        model=MODEL_NAME,
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice="required",
        max_tokens=200,
        stream=True,
    )
    ids, names, arguments, finish = set(), "", "", None
    for chunk in stream:
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or []:
            assert delta.index == 0
            if delta.id:
                ids.add(delta.id)
            if delta.function and delta.function.name:
                names += delta.function.name
            if delta.function and delta.function.arguments:
                arguments += delta.function.arguments
        finish = choice.finish_reason or finish
    assert finish == "tool_calls" and len(ids) == 1
    assert valid_call(names, json.loads(arguments))


def test_strict_tools_give_text_or_a_valid_call(openai_client: openai.OpenAI) -> None:
    strict: list[Any] = [{**t, "function": {**t["function"], "strict": True}} for t in TOOLS]
    for seed in range(6):
        answer = openai_client.chat.completions.create(
            model=MODEL_NAME, messages=MESSAGES, tools=strict, seed=seed, max_tokens=60
        )
        message = answer.choices[0].message
        for call in function_calls(message):
            assert valid_call(call.function.name, json.loads(call.function.arguments))
        assert "<tool_call>" not in (message.content or "")


def test_tools_are_rendered_into_the_prompt(openai_client: openai.OpenAI) -> None:
    plain = openai_client.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, max_tokens=4, temperature=0
    )
    offered = openai_client.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, tools=TOOLS, max_tokens=4, temperature=0
    )
    assert plain.usage is not None and offered.usage is not None
    # The template lists each tool's JSON in a system turn.
    assert offered.usage.prompt_tokens > plain.usage.prompt_tokens + 50
    assert offered.choices[0].message.content  # the model answered in text
    declined = openai_client.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, tools=TOOLS, tool_choice="none", max_tokens=4
    )
    assert declined.usage is not None
    assert declined.usage.prompt_tokens == plain.usage.prompt_tokens


def test_a_conversation_with_calls_and_results_is_accepted(openai_client: openai.OpenAI) -> None:
    history: list[Any] = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]
    answer = openai_client.chat.completions.create(
        model=MODEL_NAME, messages=history, tools=TOOLS, max_tokens=4
    )
    short = openai_client.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, tools=TOOLS, max_tokens=4
    )
    assert answer.usage is not None and short.usage is not None
    assert answer.usage.prompt_tokens > short.usage.prompt_tokens + 20


def test_the_ollama_client_sends_tools_and_call_history(server: ServerProcess) -> None:
    client = ollama.Client(host=server.base_url)
    history: list[Any] = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}],
        },
        {"role": "tool", "tool_name": "get_weather", "content": "sunny"},
    ]
    answer = client.chat(
        model=MODEL_NAME, messages=history, tools=TOOLS, options={"num_predict": 4}
    )
    plain = client.chat(model=MODEL_NAME, messages=MESSAGES, options={"num_predict": 4})
    assert answer.done and (answer.prompt_eval_count or 0) > (plain.prompt_eval_count or 0) + 50


def test_ollama_tool_calls_carry_object_arguments() -> None:
    # The random-weight model never calls a tool on its own (Ollama has no tool_choice to
    # enforce one), so the framing is checked on the scanner's output directly.
    scanner = ToolCallScanner("<tool_call>", "</tool_call>", json.loads)
    shown, calls = scanner.feed("Let me check.<tool_c")
    assert shown == "Let me check." and calls == []
    shown, calls = scanner.feed('all>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>')
    shaped = message(Parts(shown, "", calls))
    assert shaped == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": "add", "arguments": {"a": 1, "b": 2}}}],
    }
    ollama.Message.model_validate(shaped)  # the official client reads it


@pytest.fixture
def plain_template_server(tiny_model_path: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """The tiny model with a chat template that knows nothing of tools."""
    folder = tmp_path / "plain-llama"
    shutil.copytree(tiny_model_path, folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("tool_parser_type")
    config["chat_template"] = (
        "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n"
        "{{ message['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    config_path.write_text(json.dumps(config))
    running = start_server(["--model", str(folder)], tmp_path / "log")
    yield running
    running.stop()


def test_a_template_without_tools_refuses_them_unless_the_call_is_enforced(
    plain_template_server: ServerProcess,
) -> None:
    client = openai.OpenAI(
        base_url=f"{plain_template_server.base_url}/v1", api_key="unused", max_retries=0
    )
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="plain-llama", messages=MESSAGES, tools=TOOLS)
    assert "plain-llama" in refused.value.message and "tool" in refused.value.message
    assert refused.value.body["param"] == "tools"  # type: ignore[index]
    ollama_client = ollama.Client(host=plain_template_server.base_url)
    with pytest.raises(ollama.ResponseError) as also:
        ollama_client.chat(model="plain-llama", messages=MESSAGES, tools=TOOLS)
    assert also.value.status_code == 400
    for seed in range(5):
        answer = client.chat.completions.create(
            model="plain-llama",
            messages=MESSAGES,
            tools=TOOLS,
            tool_choice="required",
            seed=seed,
            max_tokens=200,
        )
        (call,) = function_calls(answer.choices[0].message)
        assert valid_call(call.function.name, json.loads(call.function.arguments))


def test_it_rejects_an_unknown_function_in_tool_choice(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.chat.completions.create(
            model=MODEL_NAME,
            messages=MESSAGES,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "launch"}},
        )
    assert refused.value.body["param"] == "tool_choice"  # type: ignore[index]
    assert "launch" in refused.value.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": {"name": "f"}}, "tools"),
        (
            {"tools": [{"type": "function", "function": {"name": "no spaces"}}]},
            "tools[0].function.name",
        ),
        ({"tools": [{"type": "function"}]}, "tools[0].function"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0]"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 7}}}]},
            "tools[0].function.parameters",
        ),
        ({"tools": TOOLS + TOOLS[:1]}, "tools"),
        ({"tools": TOOLS, "tool_choice": "always"}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "object", "not": {}}},
                    }
                ],
                "tool_choice": "required",
            },
            "tool_choice",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "f", "arguments": "{"}}],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_it_rejects_malformed_tools(
    client: httpx.Client, fields: dict[str, Any], param: str
) -> None:
    body = {"model": MODEL_NAME, "messages": MESSAGES, "max_tokens": 4, **fields}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    if "tool_choice" not in fields:  # Ollama has no tool_choice
        ollama_body = {"model": MODEL_NAME, "messages": MESSAGES, "stream": False, **fields}
        response = client.post("/api/chat", json=ollama_body)
        assert response.status_code == 400, response.text


def test_tools_are_refused_where_the_protocol_has_none(client: httpx.Client) -> None:
    completion = {"model": MODEL_NAME, "prompt": "hi", "tools": TOOLS}
    response = client.post("/v1/completions", json=completion)
    assert response.status_code == 400 and response.json()["error"]["param"] == "tools"
    generate = {"model": MODEL_NAME, "prompt": "hi", "tools": TOOLS, "stream": False}
    response = client.post("/api/generate", json=generate)
    assert response.status_code == 400 and "'tools'" in response.json()["error"]
