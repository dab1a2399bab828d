"""Value types: routes and targets (the admin contract), requests, and the event stream."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from routing._exceptions import InvalidRequest

__all__ = [
    "Finish",
    "GenerateResult",
    "GenerationRequest",
    "HEALTH_STATES",
    "MAX_MODEL_NAME_CHARS",
    "Route",
    "Started",
    "StreamEvent",
    "Target",
    "TextDelta",
]

HEALTH_STATES = ("unknown", "healthy", "degraded", "down")
# Longer than any model name Ollama, Hugging Face or the registry (255) uses; a name over
# 64 KiB broke the route look-up's URL before this was checked (routing._routes.route_path).
MAX_MODEL_NAME_CHARS = 1024
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

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, model: str) -> Target:
        """Build a target from one element of a route's ``targets`` list."""
        try:
            backend_type = str(obj["backend_type"])
            endpoint_url = str(obj["endpoint_url"]).rstrip("/")
        except (KeyError, TypeError) as exc:
            raise ValueError(f"target needs backend_type and endpoint_url: {obj!r}") from exc
        upstream = obj.get("upstream_model") or obj.get("model_name") or model
        health = obj.get("health") or "unknown"
        if health not in HEALTH_STATES:
            health = "unknown"

        def _num(key: str, default: float) -> Any:
            value = obj.get(key)
            return default if value is None else value

        return cls(
            backend_type=backend_type,
            endpoint_url=endpoint_url,
            upstream_model=str(upstream),
            model_name=str(obj.get("model_name") or model),
            entry_id=obj.get("entry_id"),
            timeout_seconds=float(_num("timeout_seconds", 60.0)),
            max_tokens=int(_num("max_tokens", 2048)),
            temperature_default=float(_num("temperature_default", 0.7)),
            health=health,
        )

    @property
    def key(self) -> tuple[str, str, str]:
        """Identify the target for the circuit breaker."""
        return (self.backend_type, self.endpoint_url, self.upstream_model)


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
        """Validate the caller's arguments; raise InvalidRequest saying what is wrong."""
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequest(f"model must be a non-empty string, got {model!r}")
        msgs: tuple[Mapping[str, Any], ...] | None = None
        if messages is None:
            if not isinstance(prompt, str):
                raise InvalidRequest(f"prompt must be a string, got {type(prompt).__name__}")
            if not prompt.strip():
                # Why: Ollama answers an empty prompt by loading the model and returning "".
                raise InvalidRequest("prompt must not be empty")
        else:
            if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
                raise InvalidRequest("messages must be a list of {role, content} mappings")
            if not messages:
                raise InvalidRequest("messages must not be empty")
            for i, m in enumerate(messages):
                if not isinstance(m, Mapping):
                    raise InvalidRequest(f"messages[{i}] must be a mapping, got {m!r}")
                if m.get("role") not in _ROLES:
                    raise InvalidRequest(
                        f"messages[{i}].role must be one of {sorted(_ROLES)}, got {m.get('role')!r}"
                    )
                if not isinstance(m.get("content"), str):
                    raise InvalidRequest(f"messages[{i}].content must be a string")
            msgs = tuple(messages)
        if system is not None and not isinstance(system, str):
            raise InvalidRequest("system must be a string")
        temperature = _number("temperature", temperature, low=0.0, high=2.0)
        top_p = _number("top_p", top_p, low=0.0, high=1.0)
        if max_tokens is not None and (
            not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
        ):
            raise InvalidRequest(f"max_tokens must be a positive integer, got {max_tokens!r}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise InvalidRequest(f"seed must be an integer, got {seed!r}")
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
                raise InvalidRequest(f"stop must be a string or a list of strings, got {stop!r}")
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
