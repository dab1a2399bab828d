"""Split a streamed answer into its parts: reasoning, text, tool calls (both protocols use it).

Reasoning first (thinking.py), then tool calls in what remains (tools.py): a model thinks,
then answers or calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .thinking import ThinkingSplitter, opened_by_prompt, supports_thinking
from .tool_calls import ToolCall, ToolCallScanner, scanner_for
from .tools import ToolRequest


@dataclass
class Parts:
    """What a piece of the answer holds."""

    content: str = ""
    thinking: str = ""
    calls: list[ToolCall] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.content or self.thinking or self.calls)

    def __iadd__(self, other: Parts) -> Parts:
        self.content += other.content
        self.thinking += other.thinking
        self.calls += other.calls
        return self


class AnswerSplitter:
    """Feed text pieces, get `Parts`; `show_thinking=False` drops the reasoning."""

    def __init__(
        self,
        thinking: ThinkingSplitter | None,
        tools: ToolCallScanner | None,
        *,
        show_thinking: bool = True,
    ) -> None:
        self._thinking = thinking
        self._tools = tools
        self._show_thinking = show_thinking

    def feed(self, text: str) -> Parts:
        thinking, content = self._thinking.feed(text) if self._thinking else ("", text)
        return self._parts(thinking, content, final=False)

    def finish(self) -> Parts:
        thinking, content = self._thinking.finish() if self._thinking else ("", "")
        return self._parts(thinking, content, final=True)

    def all_of(self, text: str) -> Parts:
        """Split a whole answer."""
        parts = self.feed(text)
        parts += self.finish()
        return parts

    def _parts(self, thinking: str, content: str, *, final: bool) -> Parts:
        calls: list[ToolCall] = []
        if self._tools is not None:
            content, calls = self._tools.feed(content)
            if final:
                rest, more = self._tools.finish()
                content, calls = content + rest, calls + more
        return Parts(content, thinking if self._show_thinking else "", calls)


def answer_splitter(
    tokenizer: Any, prompt_tokens: list[int], tools: ToolRequest, think: bool | None
) -> AnswerSplitter:
    """Build the splitter for one request: `think` is Ollama's (None: not given)."""
    thinking = None
    if supports_thinking(tokenizer):
        inside = opened_by_prompt(tokenizer, prompt_tokens)
        thinking = ThinkingSplitter(tokenizer.think_start, tokenizer.think_end, inside=inside)
    return AnswerSplitter(thinking, scanner_for(tokenizer, tools), show_thinking=think is not False)
