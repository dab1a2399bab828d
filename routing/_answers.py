"""How the router reads one target's answer: the first-content deadline and the checks.

Every backend kind's events pass through here, so what reaches a caller is checked once for
all of them: text pieces are strings (lone surrogates replaced), final stats have the types
and ranges the contract promises, and whatever a backend raises while answering is that
target's UpstreamError (see routing._exceptions).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Mapping

from routing._exceptions import UpstreamProtocolError, UpstreamTimeout
from routing._types import Finish, StreamEvent, Target, TextDelta

__all__ = [
    "check_finish",
    "checked_text",
    "close_quietly",
    "first_content",
    "malformed",
    "not_an_event",
    "whole_answer",
]

logger = logging.getLogger("routing")


async def first_content(
    upstream: AsyncGenerator[StreamEvent, None], target: Target
) -> TextDelta | Finish:
    """Wait for a stream's first content (or its Finish) within the target's deadline.

    Why a deadline apart from the read timeout: an upstream that sends keep-alives (SSE
    ``:`` comments, blank NDJSON lines) resets the read timeout forever without sending a
    word. The deadline is ``first_token_timeout_seconds``, by default ``timeout_seconds``.
    """
    deadline = target.first_token_timeout_seconds or target.timeout_seconds
    try:
        # asyncio.timeout costs ~4 us per call (measured: 4.1 vs 0.3 us for an empty async
        # with), 1-3% of the router's 150-540 us per call (docs/benchmarks.md): a shared
        # watchdog would be cheaper but is not worth its code.
        async with asyncio.timeout(deadline):
            while True:
                event = await upstream.__anext__()
                if type(event) is Finish:
                    return event
                if type(event) is not TextDelta:
                    raise not_an_event(event, target)
                event = checked_text(event, target)
                if event.text:  # Started promises content: an empty piece is none
                    return event
    except StopAsyncIteration:
        raise UpstreamProtocolError("answer ended without final stats", target=target) from None
    except TimeoutError:
        raise UpstreamTimeout(
            f"timed out: no content within {deadline:g} s", target=target
        ) from None


async def whole_answer(
    upstream: AsyncGenerator[StreamEvent, None], target: Target
) -> tuple[list[TextDelta], Finish]:
    """Read and check a whole answer not streamed, within the target's ``timeout_seconds``.

    The read timeout alone would let an upstream that trickles a byte at a time hold the
    call forever; an answer not streamed must arrive within the target's timeout.
    """
    pieces: list[TextDelta] = []
    finish: Finish | None = None
    try:
        async with asyncio.timeout(target.timeout_seconds):
            async for event in upstream:
                if type(event) is TextDelta:
                    event = checked_text(event, target)
                    if event.text:
                        pieces.append(event)
                elif type(event) is Finish:
                    finish = event
                else:
                    raise not_an_event(event, target)
    except TimeoutError:
        raise UpstreamTimeout(
            f"timed out: no answer within {target.timeout_seconds:g} s", target=target
        ) from None
    if finish is None:
        raise UpstreamProtocolError("answer ended without final stats", target=target)
    return pieces, check_finish(finish, target)


# Upper bounds of the final stats: a count or duration beyond them is no real answer's (and
# the admin's columns could not store it).
_MAX_COUNT = 2**31 - 1
_MAX_NS = 2**63 - 1
_FINISH_INTS = (
    ("prompt_tokens", _MAX_COUNT),
    ("completion_tokens", _MAX_COUNT),
    ("total_duration_ns", _MAX_NS),
    ("load_duration_ns", _MAX_NS),
    ("prompt_eval_duration_ns", _MAX_NS),
    ("eval_duration_ns", _MAX_NS),
)


def check_finish(finish: Finish, target: Target) -> Finish:
    """Refuse final stats of the wrong type or range (``usage: "x"``, a negative count)."""
    for name, limit in _FINISH_INTS:
        value = getattr(finish, name)
        if value is not None and (type(value) is not int or not 0 <= value <= limit):
            raise UpstreamProtocolError(
                f"final stats: {name} must be an integer from 0 to {limit}, got {value!r:.40}",
                target=target,
            )
    for name in ("finish_reason", "upstream_model"):
        value = getattr(finish, name)
        if value is not None and (type(value) is not str or _lone_surrogate(value)):
            raise UpstreamProtocolError(
                f"final stats: {name} must be a string, got {value!r:.40}", target=target
            )
    if not isinstance(finish.extra, Mapping):
        raise UpstreamProtocolError("final stats: extra must be a mapping", target=target)
    return finish


def checked_text(event: TextDelta, target: Target) -> TextDelta:
    """Refuse text that is not a string; replace lone surrogates (JSON's ``"\\ud800"``).

    Why replace rather than refuse: they are what bad UTF-8 bytes in an answer already
    become (U+FFFD, see iter_lines), and a caller must be able to encode every text it gets.
    """
    text = event.text
    if type(text) is not str:
        raise UpstreamProtocolError(
            f"answer text must be a string, got {text!r:.40}", target=target
        )
    if _lone_surrogate(text):
        return TextDelta("".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text))
    return event


def _lone_surrogate(text: str) -> bool:
    if text.isascii():  # O(1) in CPython
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def not_an_event(event: object, target: Target) -> UpstreamProtocolError:
    return UpstreamProtocolError(f"backend yielded {event!r:.80}", target=target)


def malformed(exc: Exception, target: Target) -> UpstreamProtocolError:
    """An exception no backend meant to raise, met while reading the target's answer."""
    logger.warning(
        "routing: %s %s gave an answer routing could not read",
        target.backend_type,
        target.endpoint_url,
        exc_info=exc,
    )
    error = UpstreamProtocolError(
        f"malformed answer ({type(exc).__name__}: {str(exc)[:200]})", target=target
    )
    error.__cause__ = exc
    return error


async def close_quietly(upstream: AsyncGenerator[StreamEvent, None]) -> None:
    """Close a backend's answer; a failure to close is no failure of the call."""
    try:
        await upstream.aclose()
    except Exception:
        logger.debug("routing: closing an upstream answer failed", exc_info=True)
