"""Turn a request's prompt or chat messages into the token ids the model will see.

Tokenising megabytes takes seconds (a 14 MiB prompt: 12-40 s), so a prompt is first
measured against the most text the model's context could hold, and refused if longer;
what remains is tokenised in a worker thread (the Rust tokenizer releases the GIL), never
on the event loop, so `/health` and every other request keep being answered meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .errors import ContextOverflow, InvalidRequest
from .tools import tool_fields

T = TypeVar("T")

# One tokenising thread: a tokenizer is not guaranteed safe to call from several threads.
_tokenizing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlx-tokenize")

# Unicode normalisation can shrink text before it is split into tokens (NFC composes "e" +
# U+0301 into one character; Hangul jamo compose three into one): allow for it.
_NORMALISATION_SHRINK = 4


def longest_token_chars(tokenizer: Any) -> int:
    """Return the most characters of text one token of this vocabulary can stand for.

    A vocabulary string is at least as long as the text it covers: SentencePiece pieces
    spell their text (with U+2581 for a space), byte-level BPE spells one byte per
    character, byte-fallback pieces (`<0xE2>`) cover one byte in six characters.
    """
    return max((len(piece) for piece in tokenizer.get_vocab()), default=1) or 1


def refuse_what_cannot_fit(prompt_chars: int, *, context: int, longest: int, param: str) -> None:
    """Refuse, before tokenising it, a prompt too long for the context whatever its tokens."""
    most = context * longest * _NORMALISATION_SHRINK
    if prompt_chars > most:
        raise ContextOverflow(
            f"'{param}' is {prompt_chars} characters: more than the model's context of "
            f"{context} tokens can hold (at most {most} characters)",
            param=param,
        )


async def off_the_loop(work: Callable[[], T]) -> T:
    """Run tokenising work in the tokenising thread."""
    return await asyncio.get_running_loop().run_in_executor(_tokenizing, work)


CHAT_ROLES = {"system", "user", "assistant", "tool"}


def encode_text(tokenizer: Any, prompt: str) -> list[int]:
    """Encode a raw prompt, adding BOS unless the prompt already starts with it."""
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (bos and prompt.startswith(bos))
    tokens: list[int] = tokenizer.encode(prompt, add_special_tokens=add_special)
    return tokens


def message_text(content: Any, param: str) -> str:
    """Accept a string or OpenAI's list of content parts (text parts only)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise InvalidRequest(f"'{param}' supports only text parts", param=param)
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise InvalidRequest(f"'{param}' must be a string", param=param)


def validate_messages(value: Any, param: str = "messages") -> list[dict[str, Any]]:
    """Check a chat message list and normalise it to [{role, content}]."""
    if value is None:
        raise InvalidRequest(f"'{param}' is required", param=param)
    if not isinstance(value, list):
        raise InvalidRequest(f"'{param}' must be a list of messages", param=param)
    messages = []
    for i, message in enumerate(value):
        where = f"{param}[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"'{where}' must be an object", param=where)
        if message.get("images"):
            raise InvalidRequest(
                f"'{where}.images' is not supported by this server", param=f"{where}.images"
            )
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise InvalidRequest(
                f"'{where}.role' must be one of {sorted(CHAT_ROLES)}", param=f"{where}.role"
            )
        normalised: dict[str, Any] = {
            "role": role,
            "content": message_text(message.get("content"), f"{where}.content"),
        }
        normalised.update(tool_fields(message, where))
        messages.append(normalised)
    return messages


def encode_chat(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    think: bool | None = None,
) -> list[int]:
    """Render messages (and tools, if any) with the model's chat template and encode them.

    `think=False` asks a thinking model's template not to think (Qwen3's `enable_thinking`).
    """
    if getattr(tokenizer, "chat_template", None):
        extra = {"enable_thinking": False} if think is False else {}
        rendered = tokenizer.apply_chat_template(
            messages, tools=tools or None, tokenize=False, add_generation_prompt=True, **extra
        )
        # The template writes BOS itself; adding special tokens again would double it.
        tokens: list[int] = tokenizer.encode(rendered, add_special_tokens=False)
        return tokens
    # A base model without a template: a plain transcript is the least surprising prompt.
    transcript = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
    return encode_text(tokenizer, transcript)
