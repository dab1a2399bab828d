"""Athena's LLM router: per-model routing to Ollama, MLX and OpenAI-compatible backends.

    from routing import get_llm_router

    router = get_llm_router()
    result = await router.generate(model="phi3:mini", prompt="Hello", temperature=0.7)
    async for text in router.stream(model="phi3:mini", prompt="Hello"):
        print(text, end="")

    result = generate_sync("phi3:mini", "Hello")  # from sync code: Celery tasks, views, scripts

Framework-free: httpx and the standard library (PyYAML for YAML routes files).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from routing import logs  # stdlib only: the shared log format and request id
from routing._exceptions import (
    AllTargetsFailed,
    InternalError,
    InvalidRequest,
    ModelNotConfigured,
    RouteLookupError,
    RouterClosed,
    RoutingError,
    StreamInterrupted,
    TargetFailure,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from routing._types import (
    MAX_MODEL_NAME,
    Finish,
    GenerateResult,
    GenerationRequest,
    Route,
    Started,
    StreamEvent,
    Target,
    TextDelta,
)

if TYPE_CHECKING:
    from routing._backends import (
        Backend,
        ProbeResult,
        backend_class,
        backend_kinds,
        register_backend,
    )
    from routing._results import ResponseStream
    from routing._router import LLMRouter, get_llm_router
    from routing._sync import chat_sync, generate_sync

__all__ = [
    "AllTargetsFailed",
    "Backend",
    "Finish",
    "GenerateResult",
    "GenerationRequest",
    "InternalError",
    "InvalidRequest",
    "LLMRouter",
    "MAX_MODEL_NAME",
    "ModelNotConfigured",
    "ProbeResult",
    "ResponseStream",
    "Route",
    "RouteLookupError",
    "RouterClosed",
    "RoutingError",
    "Started",
    "StreamEvent",
    "StreamInterrupted",
    "Target",
    "TargetFailure",
    "TextDelta",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "backend_class",
    "backend_kinds",
    "chat_sync",
    "generate_sync",
    "get_llm_router",
    "logs",
    "register_backend",
]

# Why lazy: httpx alone takes ~150 ms to import. Names that need it load on first access,
# so `import routing` (and catching its exceptions) stays cheap for services that only
# sometimes call a model.
_LAZY = {
    "LLMRouter": "routing._router",
    "ResponseStream": "routing._results",
    "get_llm_router": "routing._router",
    "generate_sync": "routing._sync",
    "chat_sync": "routing._sync",
    "Backend": "routing._backends",
    "ProbeResult": "routing._backends",
    "backend_class": "routing._backends",
    "backend_kinds": "routing._backends",
    "register_backend": "routing._backends",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'routing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
