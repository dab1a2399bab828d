"""Reasoning ("thinking") text: read Ollama's `think`, split `<think>...</think>` out of answers.

Wire formats: Ollama (docs/api.md) `think: true | false` on /api/chat and /api/generate,
answers carry `message.thinking` (chat) or `thinking` (generate); OpenAI-compatible servers
(vLLM, DeepSeek's API) carry it as `message.reasoning_content` / `delta.reasoning_content`.
The markers are the tokenizer's (mlx-lm's `think_start` / `think_end`, tokenizer_utils.py).
Framework-free and MLX-free (issue 12 moves it).
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidRequest


def ollama_think(body: dict[str, Any]) -> bool | None:
    """Read Ollama's `think`: None when absent; levels ("low", ...) mean true."""
    value = body.get("think")
    if value is None or isinstance(value, bool):
        return value
    if value in ("low", "medium", "high"):
        return True
    raise InvalidRequest("'think' must be true, false, 'low', 'medium' or 'high'", param="think")


def supports_thinking(tokenizer: Any) -> bool:
    """Tell whether mlx-lm found thinking markers in the model's vocabulary."""
    return bool(getattr(tokenizer, "has_thinking", False))


def can_turn_off(tokenizer: Any) -> bool:
    """Tell whether the chat template reads `enable_thinking` (Qwen3's switch)."""
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and "enable_thinking" in template


def check_think(tokenizer: Any, think: bool | None, model_name: str) -> None:
    """Refuse `think: true` for a model that cannot think (as Ollama does)."""
    if think and not supports_thinking(tokenizer):
        raise InvalidRequest(f"model '{model_name}' does not support thinking", param="think")


def opened_by_prompt(tokenizer: Any, prompt_tokens: list[int]) -> bool:
    """Tell whether the prompt ends inside a thinking block (templates that open `<think>`
    in the generation prompt, so the answer starts with the reasoning itself)."""
    start, end = tokenizer.think_start, tokenizer.think_end
    tail: str = tokenizer.decode(prompt_tokens[-16:])
    return tail.rfind(start) > tail.rfind(end)


class ThinkingSplitter:
    """Split streamed text into reasoning and answer at the thinking markers.

    The reasoning is the text inside the first `start ... end` block at the start of the
    answer (or from the start, when the prompt opened it); everything else is the answer.
    A possible start of a marker is held back until the next text shows whether it is one.
    Whitespace right after a marker is dropped.
    """

    def __init__(self, start: str, end: str, *, inside: bool) -> None:
        self._start = start
        self._end = end
        # "before": the answer may still open a block; "inside"; "after": plain answer.
        self._state = "inside" if inside else "before"
        self._held = ""
        self._trim = inside

    def feed(self, text: str) -> tuple[str, str]:
        """Add text; return (reasoning, answer) safe to show now."""
        buffer = self._held + text
        self._held = ""
        thinking = content = ""
        if self._state == "before":
            stripped = buffer.lstrip()
            if stripped.startswith(self._start):
                buffer = stripped[len(self._start) :]
                self._state, self._trim = "inside", True
            elif self._start.startswith(stripped):
                self._held = buffer  # maybe the start of the marker: wait
                return "", ""
            else:
                self._state = "after"
        if self._state == "inside":
            if self._trim:
                buffer = buffer.lstrip()
                self._trim = not buffer
            at = buffer.find(self._end)
            if at < 0:
                keep = _partial_suffix(buffer, self._end)
                self._held = buffer[len(buffer) - keep :]
                return buffer[: len(buffer) - keep], ""
            thinking, buffer = buffer[:at], buffer[at + len(self._end) :].lstrip()
            self._state = "after"
            self._trim = not buffer
        elif self._trim:
            buffer = buffer.lstrip()
            self._trim = not buffer
        content = buffer
        return thinking, content

    def finish(self) -> tuple[str, str]:
        """End of the answer: release held text (an unfinished block is reasoning)."""
        held, self._held = self._held, ""
        return (held, "") if self._state == "inside" else ("", held)


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `marker`."""
    for length in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:length]):
            return length
    return 0
