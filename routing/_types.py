"""Value types: routes and targets (the admin contract), requests, and the event stream."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from routing._exceptions import InvalidRequest

__all__ = [
    "Finish",
    "GenerateResult",
    "GenerationRequest",
    "HEALTH_STATES",
    "MAX_MODEL_NAME",
    "Route",
    "Started",
    "StreamEvent",
    "Target",
    "TextDelta",
]

HEALTH_STATES = ("unknown", "healthy", "degraded", "down")
# The admin's limit for a model name (backends.models.LLMBackend.model_name).
MAX_MODEL_NAME = 255
_MAX_JSON_DEPTH = 32
_ROLES = frozenset({"system", "user", "assistant", "tool"})


@dataclass(frozen=True, slots=True)
class Target:
    """One place a model can be served, as in the admin's route look-up (docs/architecture.md)."""

    backend_type: str
    endpoint_url: str
    upstream_model: str
    model_name: str = ""
    entry_id: int | None = None
    timeout_seconds: float = 60.0
    max_tokens: int = 2048
    temperature_default: float = 0.7
    health: str = "unknown"
    # How long a streamed answer may take to send its first content (None: timeout_seconds).
    # Why apart from timeout_seconds: that one bounds each read, and an upstream that sends
    # keep-alives (SSE comments, blank lines) and no content never lets a read time out.
    first_token_timeout_seconds: float | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, model: str) -> Target:
        """Build a target from one element of a route's ``targets`` list; ValueError if malformed."""
        if not isinstance(obj, Mapping):
            raise ValueError(f"a target must be an object: {obj!r:.200}")
        backend_type = obj.get("backend_type")
        endpoint_url = obj.get("endpoint_url")
        if not isinstance(backend_type, str) or not isinstance(endpoint_url, str):
            raise ValueError(f"target needs backend_type and endpoint_url strings: {obj!r:.200}")
        upstream = obj.get("upstream_model") or obj.get("model_name") or model
        model_name = obj.get("model_name") or model
        if not isinstance(upstream, str) or not isinstance(model_name, str):
            raise ValueError(
                f"target's upstream_model and model_name must be strings: {obj!r:.200}"
            )
        entry_id = obj.get("entry_id")
        if entry_id is not None and (type(entry_id) is not int or entry_id < 1):
            raise ValueError(f"target's entry_id must be a positive integer: {entry_id!r:.80}")
        health = obj.get("health") or "unknown"
        if health not in HEALTH_STATES:
            health = "unknown"
        first_token = _positive(obj, "first_token_timeout_seconds", None)
        return cls(
            backend_type=backend_type,
            endpoint_url=endpoint_url.rstrip("/"),
            upstream_model=upstream,
            model_name=model_name,
            entry_id=entry_id,
            timeout_seconds=_positive(obj, "timeout_seconds", 60.0),
            max_tokens=int(_positive(obj, "max_tokens", 2048, integer=True)),
            temperature_default=_number_in(obj, "temperature_default", 0.7),
            health=health,
            first_token_timeout_seconds=first_token,
        )

    @property
    def key(self) -> tuple[str, str, str]:
        """Identify the target for the circuit breaker."""
        return (self.backend_type, self.endpoint_url, self.upstream_model)


def _positive(obj: Mapping[str, Any], key: str, default: Any, *, integer: bool = False) -> Any:
    """Read a positive number of a target (null or absent: the default); ValueError if not one."""
    value: Any = obj.get(key)
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, int if integer else (int, float))
        or not 0 < value < math.inf
    ):
        raise ValueError(f"target's {key} must be a positive number, got {value!r:.80}")
    return value if integer else float(value)


def _number_in(obj: Mapping[str, Any], key: str, default: float) -> float:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"target's {key} must be a number, got {value!r:.80}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Route:
    """A model's ordered chain of targets; ``source`` is ``admin``, ``file`` or ``default``."""

    model: str
    targets: tuple[Target, ...]
    source: str = "admin"


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A validated, protocol-neutral request; each backend renders it in its wire format."""

    model: str
    prompt: str | None = None
    messages: tuple[Mapping[str, Any], ...] | None = None
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    stream: bool = False

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    def temperature_for(self, target: Target) -> float:
        # Why `is None`: an explicit 0 means greedy decoding and must reach the backend as 0.
        return target.temperature_default if self.temperature is None else self.temperature

    def max_tokens_for(self, target: Target) -> int:
        return target.max_tokens if self.max_tokens is None else self.max_tokens

    @classmethod
    def build(
        cls,
        *,
        model: Any,
        prompt: Any = None,
        messages: Any = None,
        system: Any = None,
        temperature: Any = None,
        max_tokens: Any = None,
        top_p: Any = None,
        stop: Any = None,
        seed: Any = None,
        stream: bool = False,
    ) -> GenerationRequest:
        """Validate the caller's arguments; raise InvalidRequest naming the field that is wrong.

        Text must be sendable as UTF-8 JSON: a lone surrogate (what a bad decode or JSON's
        ``"\\ud800"`` leaves in a str) is refused here, not discovered while sending.
        """
        check_model_name(model)
        msgs: tuple[Mapping[str, Any], ...] | None = None
        if messages is None:
            if not isinstance(prompt, str):
                raise InvalidRequest(f"prompt must be a string, got {type(prompt).__name__}")
            if not prompt.strip():
                # Why: Ollama answers an empty prompt by loading the model and returning "".
                raise InvalidRequest("prompt must not be empty")
            _check_text("prompt", prompt)
        else:
            if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
                raise InvalidRequest("messages must be a list of {role, content} mappings")
            if not messages:
                raise InvalidRequest("messages must not be empty")
            for i, m in enumerate(messages):
                if not isinstance(m, Mapping):
                    raise InvalidRequest(f"messages[{i}] must be a mapping, got {m!r:.80}")
                if m.get("role") not in _ROLES:
                    raise InvalidRequest(
                        f"messages[{i}].role must be one of {sorted(_ROLES)}, "
                        f"got {m.get('role')!r:.80}"
                    )
                if not isinstance(m.get("content"), str):
                    raise InvalidRequest(f"messages[{i}].content must be a string")
                # Other keys (images, tool calls) are passed on as they are: JSON values only.
                _check_json(f"messages[{i}]", m, 0)
            msgs = tuple(messages)
        if system is not None:
            if not isinstance(system, str):
                raise InvalidRequest("system must be a string")
            _check_text("system", system)
        temperature = _number("temperature", temperature, low=0.0, high=2.0)
        top_p = _number("top_p", top_p, low=0.0, high=1.0)
        if max_tokens is not None and (
            not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
        ):
            raise InvalidRequest(f"max_tokens must be a positive integer, got {max_tokens!r:.80}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise InvalidRequest(f"seed must be an integer, got {seed!r:.80}")
        stops: tuple[str, ...] | None = None
        if stop is not None:
            stops = (
                (stop,)
                if isinstance(stop, str)
                else tuple(stop)
                if isinstance(stop, (list, tuple))
                else None
            )
            if stops is None or not all(isinstance(s, str) for s in stops):
                raise InvalidRequest(
                    f"stop must be a string or a list of strings, got {stop!r:.80}"
                )
            for s in stops:
                _check_text("stop", s)
        return cls(
            model=model,
            prompt=prompt if msgs is None else None,
            messages=msgs,
            system=system,
            temperature=temperature,
            max_tokens=max_tokens,
            top_p=top_p,
            stop=stops,
            seed=seed,
            stream=stream,
        )


def check_model_name(model: Any) -> None:
    """Refuse a model name that no route could have, before it is looked up or sent."""
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest(f"model must be a non-empty string, got {model!r:.80}")
    if len(model) > MAX_MODEL_NAME:
        # The admin's limit for a model name; a longer one can name no entry.
        raise InvalidRequest(f"model must be at most {MAX_MODEL_NAME} characters, got {len(model)}")
    _check_text("model", model)


def _check_text(name: str, text: str) -> None:
    """Refuse text that cannot be encoded as UTF-8 (a lone surrogate), naming the field."""
    if text.isascii():  # O(1) in CPython: most text needs no further look
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            f"{name} is not valid Unicode text: a lone surrogate "
            f"U+{ord(text[exc.start]):04X} at character {exc.start}"
        ) from None


def _check_json(name: str, value: Any, depth: int) -> None:
    """Refuse a value that is not sendable JSON (a type JSON lacks, NaN, a lone surrogate)."""
    if depth > _MAX_JSON_DEPTH:
        raise InvalidRequest(f"{name} is nested more than {_MAX_JSON_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str):
        _check_text(name, value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequest(f"{name} must be a finite number, got {value!r}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidRequest(f"{name} has a key that is not a string: {key!r:.80}")
            _check_text(f"{name} key", key)
            _check_json(f"{name}.{key}", item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(f"{name}[{i}]", item, depth + 1)
    else:
        raise InvalidRequest(f"{name} must be JSON, got a {type(value).__name__}")


def _number(name: str, value: Any, *, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of generated text, in arrival order."""

    text: str


@dataclass(frozen=True, slots=True)
class Started:
    """The target that serves the call: yielded once, before its first TextDelta (or Finish).

    Why: a gateway sends its response headers (naming the backend) with the first content,
    before the Finish that carries the routing fields. Failed attempts before it yield nothing.
    ``fallback`` is True when the target is not the chain's first.
    """

    target: Target
    fallback: bool = False


@dataclass(frozen=True, slots=True)
class Finish:
    """The last event of every stream: why generation stopped, token counts and timings.

    Backends fill the protocol fields; the router adds where and how it was served.
    Durations in ``*_ns`` are the upstream's own figures (Ollama reports them, OpenAI does not).
    """

    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_duration_ns: int | None = None
    load_duration_ns: int | None = None
    prompt_eval_duration_ns: int | None = None
    eval_duration_ns: int | None = None
    upstream_model: str | None = None
    # Set by the router.
    model: str = ""
    backend_type: str = ""
    endpoint_url: str = ""
    entry_id: int | None = None
    fallback: bool = False
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    tokens_per_sec: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


StreamEvent = TextDelta | Started | Finish


class GenerateResult(TypedDict):
    """What generate() and chat() return, and what a finished stream holds in ``.result``."""

    response: str
    model: str
    backend: str
    done: bool
    done_reason: str | None
    total_duration: int
    eval_count: int | None
    prompt_eval_count: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float
    ttft_ms: float | None
    tokens_per_sec: float | None
    endpoint_url: str
    upstream_model: str
    entry_id: int | None
    fallback: bool
    message: dict[str, str]


HealthState = Literal["unknown", "healthy", "degraded", "down"]
