"""Calls for synchronous code: Celery tasks, Django views, scripts.

    from routing import generate_sync

    result = generate_sync("phi3:mini", "Why is the sky blue?", temperature=0)
    result["response"]

Each call runs the process-wide router's ``generate()``/``chat()`` on an event loop of its
own (``asyncio.run``), from any thread. When the call returns, its metric samples have been
sent to the admin (one bounded attempt, at most 2 s) and its connections closed: nothing is
left running between calls, so a forking Celery worker or a short script needs no shutdown
step. The price is a new connection per call, small next to a generation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from routing._router import LLMRouter, get_llm_router
from routing._types import GenerateResult

__all__ = ["chat_sync", "generate_sync"]


def generate_sync(
    model: str,
    prompt: str,
    temperature: float | None = None,
    max_tokens: int | None = None,
    *,
    system: str | None = None,
    top_p: float | None = None,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    router: LLMRouter | None = None,
) -> GenerateResult:
    """Complete a prompt from synchronous code; like ``await get_llm_router().generate(...)``."""
    _refuse_a_running_loop("generate_sync")
    llm = router or get_llm_router()
    return asyncio.run(
        llm.generate(
            model,
            prompt,
            temperature,
            max_tokens,
            system=system,
            top_p=top_p,
            stop=stop,
            seed=seed,
        )
    )


def chat_sync(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    temperature: float | None = None,
    max_tokens: int | None = None,
    *,
    system: str | None = None,
    top_p: float | None = None,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    router: LLMRouter | None = None,
) -> GenerateResult:
    """Answer a conversation from synchronous code; like ``await get_llm_router().chat(...)``."""
    _refuse_a_running_loop("chat_sync")
    llm = router or get_llm_router()
    return asyncio.run(
        llm.chat(
            model,
            messages,
            temperature,
            max_tokens,
            system=system,
            top_p=top_p,
            stop=stop,
            seed=seed,
        )
    )


def _refuse_a_running_loop(name: str) -> None:
    """A sync call inside a running loop would block that loop: say what to do instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"{name}() was called from a running event loop, which it would block: "
        f"await get_llm_router().{name.removesuffix('_sync')}(...) there instead"
    )
