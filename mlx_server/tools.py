"""Tool calling on the wire: read `tools`, `tool_choice` and message tool calls, and render the
tools into the prompt (tool_calls.py finds and renders the calls in the answer).

Wire formats:
- OpenAI (API reference, chat completions): `tools: [{"type": "function", "function": {"name",
  "description", "parameters", "strict"}}]`, `tool_choice` `"none" | "auto" | "required" |
  {"type": "function", "function": {"name"}}`; answers carry `message.tool_calls: [{"id",
  "type": "function", "function": {"name", "arguments": "<JSON text>"}}]` and
  `finish_reason: "tool_calls"`; streamed as `delta.tool_calls[{index, id, function}]` pieces.
- Ollama (docs/api.md, chat "Chat request (with tools)"): the same `tools` list; answers carry
  `message.tool_calls: [{"function": {"name", "arguments": {...}}}]`, arguments an object.

Framework-free and MLX-free (issue 12 moves wire parsing to a shared package); the grammar
that enforces a call is built in grammar.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .errors import InvalidRequest

# OpenAI's rule for function names.
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_TOOLS = 128


@dataclass(frozen=True)
class ToolSpec:
    """One function the model may call."""

    name: str
    parameters: dict[str, Any]
    description: str | None = None
    strict: bool = False

    def template_entry(self) -> dict[str, Any]:
        """The tool as chat templates expect it (OpenAI's shape, which transformers documents)."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolCallConstraint:
    """The answer must be a call (or, unless `required`, free text or a call) of these tools,
    with arguments valid against their parameters: enforced by grammar (grammar.py)."""

    tools: tuple[ToolSpec, ...]
    required: bool
    param: str

    @property
    def cache_key(self) -> str:
        calls = [[t.name, t.parameters] for t in self.tools]
        return json.dumps({"tools": calls, "required": self.required}, separators=(",", ":"))


@dataclass(frozen=True)
class ToolRequest:
    """A request's tools and how the model must use them."""

    tools: tuple[ToolSpec, ...] = ()
    # "auto", "none", "required", or a function name (OpenAI's named tool_choice).
    choice: str = "auto"

    def text_size(self) -> int:
        """Characters the offered tools add to the prompt, about (for the prompt-size cap)."""
        return sum(len(json.dumps(t.template_entry())) for t in self.offered)

    @property
    def offered(self) -> tuple[ToolSpec, ...]:
        """The tools shown to the model: none for tool_choice "none"."""
        return () if self.choice == "none" else self.tools

    def constraint(self) -> ToolCallConstraint | None:
        """The grammar a call must follow, when one is enforced.

        `required` or a named function: one call of those tools. Otherwise, if some tools
        are `strict`: free text, or a call of a strict tool (a non-strict tool's call is not
        enforced then, so it is left to the model).
        """
        if not self.offered:
            return None
        if self.choice == "required":
            return ToolCallConstraint(self.tools, True, "tool_choice")
        if self.choice != "auto":
            named = tuple(t for t in self.tools if t.name == self.choice)
            return ToolCallConstraint(named, True, "tool_choice")
        strict = tuple(t for t in self.tools if t.strict)
        if strict and len(strict) == len(self.tools):
            return ToolCallConstraint(strict, False, "tools")
        return None


def _tool(value: Any, where: str) -> ToolSpec:
    if not isinstance(value, dict) or value.get("type", "function") != "function":
        raise InvalidRequest(f"'{where}' must be a function tool", param=where)
    function = value.get("function")
    if not isinstance(function, dict):
        raise InvalidRequest(f"'{where}.function' must be an object", param=f"{where}.function")
    name = function.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(
            f"'{where}.function.name' must be 1-64 letters, digits, '_', '.' or '-'",
            param=f"{where}.function.name",
        )
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidRequest(
            f"'{where}.function.description' must be a string",
            param=f"{where}.function.description",
        )
    parameters = function.get("parameters")
    param = f"{where}.function.parameters"
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise InvalidRequest(f"'{param}' must be a JSON schema object", param=param)
    try:
        Draft202012Validator.check_schema(parameters)
    except SchemaError as exc:
        raise InvalidRequest(
            f"'{param}' is not a valid JSON schema: {exc.message}", param=param
        ) from exc
    strict = function.get("strict", False)
    if not isinstance(strict, bool):
        raise InvalidRequest(
            f"'{where}.function.strict' must be true or false", param=f"{where}.function.strict"
        )
    return ToolSpec(name, parameters, description, strict)


def parse_tools(body: dict[str, Any], *, with_choice: bool) -> ToolRequest:
    """Read `tools` (both protocols) and, for OpenAI, `tool_choice`."""
    value = body.get("tools")
    if value is None:
        value = []
    if not isinstance(value, list):
        raise InvalidRequest("'tools' must be a list", param="tools")
    if len(value) > MAX_TOOLS:
        raise InvalidRequest(f"'tools' may hold at most {MAX_TOOLS} tools", param="tools")
    tools = tuple(_tool(item, f"tools[{i}]") for i, item in enumerate(value))
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise InvalidRequest("'tools' names a function twice", param="tools")
    choice = _tool_choice(body.get("tool_choice"), names) if with_choice else "auto"
    return ToolRequest(tools, choice)


def _tool_choice(value: Any, names: list[str]) -> str:
    if value is None:
        return "auto"
    if value in ("none", "auto", "required"):
        if value == "required" and not names:
            raise InvalidRequest(
                "'tool_choice' is 'required' but no tools were given", param="tool_choice"
            )
        return str(value)
    if isinstance(value, dict) and value.get("type") == "function":
        function = value.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise InvalidRequest(
                "'tool_choice.function.name' must be a string", param="tool_choice.function.name"
            )
        if name not in names:
            listed = ", ".join(names) or "(none)"
            raise InvalidRequest(
                f"'tool_choice' names function '{name}', which is not in 'tools' ({listed})",
                param="tool_choice",
            )
        return name
    raise InvalidRequest(
        "'tool_choice' must be 'none', 'auto', 'required' or {\"type\": \"function\", "
        '"function": {"name": ...}}',
        param="tool_choice",
    )


def message_tool_calls(value: Any, where: str) -> list[dict[str, Any]]:
    """Read an assistant message's `tool_calls` (OpenAI: JSON-text arguments with ids;
    Ollama: object arguments) into the shape chat templates take: object arguments."""
    if not isinstance(value, list):
        raise InvalidRequest(f"'{where}' must be a list", param=where)
    calls = []
    for i, call in enumerate(value):
        at = f"{where}[{i}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest(f"'{at}.function.name' is required", param=f"{at}.function.name")
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                raise InvalidRequest(
                    f"'{at}.function.arguments' is not valid JSON: {exc}",
                    param=f"{at}.function.arguments",
                ) from exc
        if not isinstance(arguments, dict):
            raise InvalidRequest(
                f"'{at}.function.arguments' must be a JSON object",
                param=f"{at}.function.arguments",
            )
        entry: dict[str, Any] = {
            "type": "function",
            "function": {"name": function["name"], "arguments": arguments},
        }
        if isinstance(call.get("id"), str):
            entry["id"] = call["id"]
        calls.append(entry)
    return calls


def template_supports_tools(tokenizer: Any) -> bool:
    """Tell whether the model's chat template renders tools and mlx-lm knows its call format."""
    template = getattr(tokenizer, "chat_template", None)
    return bool(
        getattr(tokenizer, "has_tool_calling", False)
        and isinstance(template, str)
        and "tools" in template
    )


def generic_tools_message(tools: tuple[ToolSpec, ...]) -> dict[str, Any]:
    """The system message that describes tools to a model whose template has no tool support
    (used only when the call is enforced by grammar, in the generic format: bare JSON)."""
    listing = "\n".join(json.dumps(t.template_entry()) for t in tools)
    return {
        "role": "system",
        "content": (
            f"You can call these tools:\n{listing}\n"
            'Answer with one call, as JSON: {"name": <tool name>, "arguments": <object>}'
        ),
    }


def tool_fields(message: dict[str, Any], where: str) -> dict[str, Any]:
    """Read a chat message's tool fields: an assistant's calls, a tool result's call id/name."""
    fields: dict[str, Any] = {}
    if message.get("tool_calls"):
        fields["tool_calls"] = message_tool_calls(message["tool_calls"], f"{where}.tool_calls")
    # OpenAI names the call a result answers; Ollama names the tool.
    for key in ("tool_call_id", "tool_name", "name"):
        value = message.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise InvalidRequest(f"'{where}.{key}' must be a string", param=f"{where}.{key}")
            fields[key] = value
    return fields


def prompt_with_tools(
    tokenizer: Any, messages: list[dict[str, Any]], request: ToolRequest, model_name: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Return the messages and the `tools` argument to render the prompt with.

    A template without tool support gets the tools in a system message of its own (the
    generic format), but only when the call is enforced by grammar: otherwise the model
    has no format to call in, and the request is refused.
    """
    if not request.offered:
        return messages, None
    if template_supports_tools(tokenizer):
        return messages, [t.template_entry() for t in request.offered]
    constraint = request.constraint()
    if constraint is None or not constraint.required:
        raise InvalidRequest(
            f"model '{model_name}' has no tool support in its chat template; set "
            "'tool_choice' to 'required' or a function to have the call enforced",
            param="tools",
        )
    return [generic_tools_message(constraint.tools), *messages], None
