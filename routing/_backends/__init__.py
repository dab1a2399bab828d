"""Backend kinds: one module each, registered here by kind name.

Adding a kind: write a module with a ``Backend`` subclass and add it to ``_BUILTIN`` (or call
``register_backend`` from your own code).
"""

from __future__ import annotations

from routing._backends._base import Backend, ProbeResult
from routing._backends.mlx import MLXBackend
from routing._backends.ollama import OllamaBackend
from routing._backends.openai import OpenAIBackend

__all__ = ["Backend", "ProbeResult", "backend_class", "backend_kinds", "register_backend"]

_REGISTRY: dict[str, type[Backend]] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Make a backend kind available under ``cls.kind``; usable as a class decorator."""
    _REGISTRY[cls.kind] = cls
    return cls


def backend_class(kind: str) -> type[Backend] | None:
    """Return the class registered for a kind, or None."""
    return _REGISTRY.get(kind)


def backend_kinds() -> tuple[str, ...]:
    """Return the registered kind names."""
    return tuple(_REGISTRY)


_BUILTIN: tuple[type[Backend], ...] = (OllamaBackend, MLXBackend, OpenAIBackend)
for _cls in _BUILTIN:
    register_backend(_cls)
