"""Athena's mlx_server (and mlx_lm.server): the OpenAI protocol, health at GET /health."""

from __future__ import annotations

from typing import Any

from routing._backends.openai import OpenAIBackend

__all__ = ["MLXBackend"]


class MLXBackend(OpenAIBackend):
    kind = "mlx"
    health_path = "/health"

    def probe_models(self, body: Any) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
        """mlx_server's /health: ``models_available`` and ``models_loaded`` (names)."""
        if "models_available" not in body and "models_loaded" not in body:
            return super().probe_models(body)  # mlx_lm.server: {"status": "ok"} only
        loaded = tuple(str(m) for m in body.get("models_loaded") or ())
        available = tuple(str(m) for m in body.get("models_available") or ())
        return tuple(dict.fromkeys(available + loaded)), loaded
