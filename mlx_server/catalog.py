"""Which models this server can serve, found from flags and folders, and what they are."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import ModelNotFound
from .settings import ServerSettings


def rfc3339(timestamp: float) -> str:
    """Format a POSIX time the way Ollama's `created_at`/`modified_at` are written."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class ModelEntry:
    """One servable model folder (an mlx-lm checkpoint: config.json + safetensors)."""

    name: str
    path: Path

    @property
    def size_bytes(self) -> int:
        """Sum the weight files, the figure the memory budget is measured in."""
        return sum(f.stat().st_size for f in self.path.glob("*.safetensors"))

    @property
    def modified_at(self) -> float:
        """Return the newest mtime among the weight files."""
        times = [f.stat().st_mtime for f in self.path.glob("*.safetensors")]
        return max(times, default=self.path.stat().st_mtime)

    def config(self) -> dict[str, Any]:
        """Read config.json."""
        data: dict[str, Any] = json.loads((self.path / "config.json").read_text())
        return data

    @property
    def digest(self) -> str:
        """Return a stable id: hashing multi-GB weights per listing would be too slow."""
        config = (self.path / "config.json").read_bytes()
        return hashlib.sha256(config + str(self.size_bytes).encode()).hexdigest()

    def details(self) -> dict[str, Any]:
        """Describe the model in the shape of Ollama's `details` object (docs/api.md)."""
        config = self.config()
        family = str(config.get("model_type", "unknown"))
        quantization = config.get("quantization") or config.get("quantization_config")
        if isinstance(quantization, dict) and quantization.get("bits"):
            level = f"Q{quantization['bits']}"
            bytes_per_param = quantization["bits"] / 8
        else:
            dtype = str(config.get("torch_dtype") or config.get("dtype") or "float16")
            level = {"float32": "F32", "bfloat16": "BF16"}.get(dtype, "F16")
            bytes_per_param = 4.0 if level == "F32" else 2.0
        return {
            "parent_model": "",
            "format": "mlx",
            "family": family,
            "families": [family],
            "parameter_size": _human_count(self.size_bytes / bytes_per_param),
            "quantization_level": level,
        }


def _human_count(count: float) -> str:
    """Write a parameter count like Ollama does: 8.0B, 135M."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f}{unit}"
    return str(int(count))


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


class ModelCatalog:
    """Resolve client-facing names (folder names and aliases) to model folders."""

    def __init__(self, settings: ServerSettings) -> None:
        self._paths = [p.expanduser().resolve() for p in settings.model_paths]
        self._models_dir = (
            settings.models_dir.expanduser().resolve() if settings.models_dir else None
        )
        self._aliases = {k: v.expanduser().resolve() for k, v in settings.aliases.items()}

    def entries(self) -> dict[str, ModelEntry]:
        """List servable models by canonical name; rescanned per call so new folders appear."""
        found: dict[str, ModelEntry] = {}
        for path in self._paths:
            found.setdefault(path.name, ModelEntry(path.name, path))
        if self._models_dir and self._models_dir.is_dir():
            for path in sorted(self._models_dir.iterdir()):
                if _is_model_dir(path):
                    found.setdefault(path.name, ModelEntry(path.name, path))
        for alias, path in self._aliases.items():
            if not any(e.path == path for e in found.values()):
                found.setdefault(alias, ModelEntry(alias, path))
        return found

    def names(self) -> list[str]:
        """List every name a client may use, aliases included."""
        return sorted(set(self.entries()) | set(self._aliases))

    def resolve(self, name: str) -> ModelEntry:
        """Find the model a client-facing name refers to, or raise ModelNotFound."""
        entries = self.entries()
        # Ollama clients often send "name:latest"; the tag means nothing here.
        candidates = [name, name.removesuffix(":latest")]
        for candidate in candidates:
            if candidate in self._aliases:
                path = self._aliases[candidate]
                for entry in entries.values():
                    if entry.path == path:
                        return entry
            if candidate in entries:
                return entries[candidate]
        raise ModelNotFound(name, self.names())
