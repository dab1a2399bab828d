"""Validate request fields shared by both protocols; every error names its field."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import ContextOverflow, InvalidRequest
from .sampling import SamplingParams
from .structured import JsonConstraint
from .tools import ToolCallConstraint

MAX_STOP_SEQUENCES = 16
MAX_TEMPERATURE = 2.0
_SEED_LIMIT = 2**63


@dataclass(frozen=True)
class GenerationOptions:
    """Sampling and stopping options of one request, protocol-independent."""

    sampling: SamplingParams
    # None means "the server default"; always resolved against the context by `budget`.
    max_tokens: int | None
    stop: tuple[str, ...] = ()
    # The answer must be JSON matching this schema, or a tool call (enforced by grammar.py).
    constraint: JsonConstraint | ToolCallConstraint | None = None
    # Most-likely tokens to report with each sampled one (logprobs.py); None: no logprobs.
    top_logprobs: int | None = None


def number(
    value: Any,
    param: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
) -> float:
    """Check a JSON number (bools rejected) against an inclusive range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"'{param}' must be a number", param=param)
    if integer and not (isinstance(value, int) or float(value).is_integer()):
        raise InvalidRequest(f"'{param}' must be an integer", param=param)
    if not math.isfinite(value):
        raise InvalidRequest(f"'{param}' must be finite", param=param)
    if minimum is not None and value < minimum:
        raise InvalidRequest(f"'{param}' must be >= {minimum}, got {value}", param=param)
    if maximum is not None and value > maximum:
        raise InvalidRequest(f"'{param}' must be <= {maximum}, got {value}", param=param)
    return value


def optional_number(body: dict[str, Any], key: str, param: str, **limits: Any) -> float | None:
    """Read `key` from a dict as a checked number, None when absent or null."""
    value = body.get(key)
    return None if value is None else number(value, param, **limits)


def sampling(
    body: dict[str, Any], *, prefix: str = "", default_temperature: float = 1.0
) -> SamplingParams:
    """Read temperature, top_p and seed (with `prefix` naming where they live)."""
    temperature = optional_number(
        body, "temperature", f"{prefix}temperature", minimum=0.0, maximum=MAX_TEMPERATURE
    )
    top_p = optional_number(body, "top_p", f"{prefix}top_p", minimum=0.0, maximum=1.0)
    if top_p is not None and top_p == 0.0:
        raise InvalidRequest(f"'{prefix}top_p' must be > 0", param=f"{prefix}top_p")
    seed = optional_number(
        body, "seed", f"{prefix}seed", integer=True, minimum=-_SEED_LIMIT, maximum=_SEED_LIMIT - 1
    )
    return SamplingParams(
        # An explicit 0 means greedy: never `or` a default over it (flaw 2 of the sketch).
        temperature=default_temperature if temperature is None else float(temperature),
        top_p=1.0 if top_p is None else float(top_p),
        seed=None if seed is None else int(seed),
    )


def stop_sequences(value: Any, param: str) -> tuple[str, ...]:
    """Accept a string or a list of strings; empty strings are ignored."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise InvalidRequest(f"'{param}' must be a string or a list of strings", param=param)
    if len(items) > MAX_STOP_SEQUENCES:
        raise InvalidRequest(
            f"'{param}' may hold at most {MAX_STOP_SEQUENCES} sequences", param=param
        )
    return tuple(s for s in items if s)


def budget(
    requested: int | None,
    *,
    prompt_tokens: int,
    context: int,
    default: int,
    prompt_param: str,
    max_tokens_param: str,
    clamp: bool,
) -> int:
    """Return how many tokens may be generated, given the prompt and the context window.

    OpenAI rejects a max_tokens that does not fit; Ollama generates until the context
    is full, so `clamp` chooses between the two.
    """
    if prompt_tokens >= context:
        raise ContextOverflow(
            f"the prompt is {prompt_tokens} tokens, but the model's context is {context} tokens",
            param=prompt_param,
        )
    room = context - prompt_tokens
    if requested is None:
        return min(default, room)
    if requested > room and not clamp:
        raise ContextOverflow(
            f"'{max_tokens_param}' is {requested}, but only {room} tokens fit after the "
            f"{prompt_tokens}-token prompt (context {context})",
            param=max_tokens_param,
        )
    return min(requested, room)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive(value: Any, param: str = "keep_alive") -> float | None:
    """Parse Ollama's keep_alive: seconds as a number, or a Go duration like "5m" or "1h30m".

    Returns None when absent (server default); a negative value means "for ever".
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidRequest(f"'{param}' must be a duration", param=param)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        try:
            return sign * float(body)  # a bare number in a string: seconds
        except ValueError:
            pass
        parts = _DURATION_PART.findall(body)
        if parts and "".join(n + u for n, u in parts) == body:
            return sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    raise InvalidRequest(
        f'\'{param}\' must be a duration such as "5m", "30s" or a number of seconds',
        param=param,
    )
