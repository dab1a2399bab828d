"""Tool calls in a model's answer: found between the template's markers, rendered per protocol.

Wire formats (see tools.py for the requests): OpenAI `message.tool_calls: [{"id", "type":
"function", "function": {"name", "arguments": "<JSON text>"}}]`, streamed as
`delta.tool_calls[{index, id, function}]` pieces; Ollama `message.tool_calls: [{"function":
{"name", "arguments": {...}}}]`. Framework-free and MLX-free (issue 12 moves it).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .tools import ToolRequest, template_supports_tools


@dataclass(frozen=True)
class ToolCall:
    """A call the model made."""

    id: str
    name: str
    arguments: dict[str, Any]

    def openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }

    def ollama(self) -> dict[str, Any]:
        return {"function": {"name": self.name, "arguments": self.arguments}}


def openai_call_deltas(index: int, call: ToolCall) -> list[dict[str, Any]]:
    """A call as OpenAI streams it: id and name first, then the arguments' text."""
    return [
        {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        },
        {"index": index, "function": {"arguments": json.dumps(call.arguments)}},
    ]


def _calls_from(parsed: Any) -> list[ToolCall]:
    """Check what a parser returned: one call or a list of {name, arguments}."""
    items = parsed if isinstance(parsed, list) else [parsed]
    calls = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError("a tool call needs a name")
        arguments = item.get("arguments", {})
        if isinstance(arguments, str):
            arguments = json.loads(arguments)
        if not isinstance(arguments, dict):
            raise ValueError("tool call arguments must be an object")
        calls.append(ToolCall(f"call_{uuid.uuid4().hex[:24]}", item["name"], arguments))
    return calls


class ToolCallScanner:
    """Split a streamed answer into text and tool calls.

    With markers (the model's `tool_call_start`/`tool_call_end`), text between them is a call
    read by `parse`; a possible start of a marker is held back until the next text shows
    whether it is one. Without markers (the generic format), the whole answer is one call.
    Text that does not parse as a call (or a call cut off by the token budget) is returned
    as text, unchanged.
    """

    def __init__(self, start: str | None, end: str | None, parse: Callable[[str], Any]) -> None:
        self._start = start
        self._end = end
        self._parse = parse
        self._buffer = ""
        self._inside = start is None

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        """Add text; return the text safe to show now and the calls completed."""
        self._buffer += text
        if self._start is None or self._end is None:
            return "", []
        shown, calls = "", list[ToolCall]()
        while True:
            if not self._inside:
                at = self._buffer.find(self._start)
                if at < 0:
                    keep = _partial_suffix(self._buffer, self._start)
                    cut = len(self._buffer) - keep
                    shown += self._buffer[:cut]
                    self._buffer = self._buffer[cut:]
                    return shown, calls
                shown += self._buffer[:at]
                self._buffer = self._buffer[at + len(self._start) :]
                self._inside = True
            at = self._buffer.find(self._end)
            if at < 0:
                return shown, calls
            body, self._buffer = self._buffer[:at], self._buffer[at + len(self._end) :]
            self._inside = False
            try:
                calls.extend(_calls_from(self._parse(body)))
            except Exception:  # noqa: BLE001 - the model's text is arbitrary: then it is text
                shown += self._start + body + self._end

    def finish(self) -> tuple[str, list[ToolCall]]:
        """End of the answer: return what is left (a call without its end marker is text)."""
        rest, self._buffer = self._buffer, ""
        if self._start is None:
            try:
                return "", _calls_from(json.loads(rest))
            except (ValueError, TypeError):
                return rest, []
        return (self._start + rest if self._inside else rest), []


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `marker`."""
    for length in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:length]):
            return length
    return 0


def scanner_for(tokenizer: Any, request: ToolRequest) -> ToolCallScanner | None:
    """Return the scanner that finds this request's tool calls in the answer, if it offers tools."""
    if not request.offered:
        return None
    if not template_supports_tools(tokenizer):
        return ToolCallScanner(None, None, json.loads)  # the generic format: bare JSON
    if request.constraint() is not None:
        # An enforced call is JSON between the markers, whatever the model's own format.
        parse: Callable[[str], Any] = json.loads
    else:
        entries = [t.template_entry() for t in request.offered]
        parser = tokenizer.tool_parser

        def parse(body: str) -> Any:
            return parser(body, entries)

    return ToolCallScanner(tokenizer.tool_call_start, tokenizer.tool_call_end, parse)
