"""Server settings: one frozen dataclass, filled from the command line and environment."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 11435
DEFAULT_HOST = "127.0.0.1"


def _env_int(name: str, default: int) -> int:
    """Read an integer environment variable, failing loudly on a bad value."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from exc


def _env_float(name: str, default: float) -> float:
    """Read a float environment variable, failing loudly on a bad value."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class ServerSettings:
    """Everything the app needs to know; the environment is read only in `from_argv`."""

    model_paths: tuple[Path, ...] = ()
    models_dir: Path | None = None
    aliases: dict[str, Path] = field(default_factory=dict)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    # Sequences decoded together in one batch per model.
    max_batch_size: int = 16
    # Requests allowed to wait for a batch slot, per model; beyond this -> 503.
    max_queue: int = 64
    # Total safetensors bytes allowed resident; least recently used idle models are
    # unloaded to stay under it. 0 means no limit.
    memory_budget_bytes: int = 0
    # Ollama's default keep_alive is 5 minutes; a negative value keeps models forever.
    default_keep_alive_s: float = 300.0
    # Default completion length when a request names none (OpenAI's and Ollama's
    # defaults differ and are both "until the context is full"; that is a poor
    # default for a shared server).
    default_max_tokens: int = 512
    retry_after_s: int = 1
    log_level: str = "info"
    # Least time between two wakes of the event loop for streamed tokens (see engine.py):
    # a fast model streams a few tokens per chunk instead of paying framing per token.
    stream_interval_ms: float = 5.0
    # GET /metrics answers loopback clients only unless this is true (ATHENA_METRICS_PUBLIC).
    metrics_public: bool = False
    # KV caches of finished solo requests kept per model, to skip re-prefilling a prompt's
    # cached prefix (prompt_cache.py); 0 disables the prompt cache.
    prompt_cache_entries: int = 4


def _parse_alias(value: str) -> tuple[str, Path]:
    """Split NAME=PATH."""
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"alias must be NAME=PATH, got {value!r}")
    return name, Path(path)


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line of `python -m mlx_server`."""
    parser = argparse.ArgumentParser(
        prog="python -m mlx_server",
        description="OpenAI- and Ollama-compatible server for MLX models.",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        type=Path,
        help="a model folder (repeatable); default: $MLX_MODEL_PATH",
    )
    parser.add_argument(
        "--models-dir", type=Path, default=None, help="serve every model folder inside DIR"
    )
    parser.add_argument(
        "--alias",
        action="append",
        default=[],
        type=_parse_alias,
        help="NAME=PATH: serve PATH also under NAME (repeatable)",
    )
    parser.add_argument("--host", default=None, help=f"default {DEFAULT_HOST}")
    parser.add_argument("--port", type=int, default=None, help=f"default {DEFAULT_PORT}")
    parser.add_argument("--max-batch-size", type=int, default=None)
    parser.add_argument("--max-queue", type=int, default=None)
    parser.add_argument(
        "--memory-budget-gb", type=float, default=None, help="0 = unlimited (default)"
    )
    parser.add_argument(
        "--keep-alive", type=float, default=None, help="default keep-alive in seconds"
    )
    parser.add_argument("--default-max-tokens", type=int, default=None)
    parser.add_argument(
        "--stream-interval-ms",
        type=float,
        default=None,
        help="least time between streamed chunks of fast models; 0 = every token (default 5)",
    )
    parser.add_argument(
        "--prompt-cache-entries",
        type=int,
        default=None,
        help="KV caches of past requests kept per model for prefix reuse; 0 = off (default 4)",
    )
    parser.add_argument("--log-level", default=None)
    return parser


def from_argv(argv: list[str] | None = None) -> ServerSettings:
    """Build settings from arguments, falling back to MLX_* environment variables."""
    args = build_parser().parse_args(argv)
    paths = list(args.model)
    if not paths and os.environ.get("MLX_MODEL_PATH"):
        paths.append(Path(os.environ["MLX_MODEL_PATH"]))
    models_dir = args.models_dir or (
        Path(os.environ["MLX_MODELS_DIR"]) if os.environ.get("MLX_MODELS_DIR") else None
    )
    if not paths and models_dir is None and not args.alias:
        raise SystemExit("no model: pass --model PATH, --models-dir DIR or set MLX_MODEL_PATH")
    budget_gb = (
        args.memory_budget_gb
        if args.memory_budget_gb is not None
        else _env_float("MLX_MEMORY_BUDGET_GB", 0.0)
    )
    keep_alive = (
        args.keep_alive if args.keep_alive is not None else _env_float("MLX_KEEP_ALIVE_S", 300.0)
    )
    cache_entries = (
        args.prompt_cache_entries
        if args.prompt_cache_entries is not None
        else _env_int("MLX_PROMPT_CACHE_ENTRIES", 4)
    )
    if cache_entries < 0:
        raise SystemExit(f"--prompt-cache-entries must be 0 or more, got {cache_entries}")
    return ServerSettings(
        model_paths=tuple(paths),
        models_dir=models_dir,
        aliases=dict(args.alias),
        host=args.host or os.environ.get("MLX_HOST", DEFAULT_HOST),
        port=args.port if args.port is not None else _env_int("MLX_PORT", DEFAULT_PORT),
        max_batch_size=args.max_batch_size or _env_int("MLX_MAX_BATCH_SIZE", 16),
        max_queue=args.max_queue if args.max_queue is not None else _env_int("MLX_MAX_QUEUE", 64),
        memory_budget_bytes=int(budget_gb * 1024**3),
        default_keep_alive_s=keep_alive,
        default_max_tokens=args.default_max_tokens or _env_int("MLX_DEFAULT_MAX_TOKENS", 512),
        log_level=args.log_level or os.environ.get("MLX_LOG_LEVEL", "info"),
        stream_interval_ms=(
            args.stream_interval_ms
            if args.stream_interval_ms is not None
            else _env_float("MLX_STREAM_INTERVAL_MS", 5.0)
        ),
        prompt_cache_entries=cache_entries,
        metrics_public=os.environ.get("ATHENA_METRICS_PUBLIC", "").strip().lower()
        in {"1", "true", "yes", "on"},
    )
