"""Ollama-compatible routes, to the wire format of ollama/ollama docs/api.md.

Streaming is the default and is NDJSON (one JSON object per line); the last object has
`done: true`, `done_reason` and the timing fields, all durations in nanoseconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import params
from .catalog import rfc3339
from .errors import APIError, ClientGone, InvalidRequest
from .prompts import encode_chat, encode_text, validate_messages
from .provider import LoadedModel, ModelProvider
from .session import Lease, start_generation, unless_disconnected
from .wire import (
    ClosingStream,
    optional_bool,
    optional_dict,
    read_json,
    reject_unsupported,
    required_str,
)

# The Ollama release whose API this server follows (reported by /api/version).
OLLAMA_API_VERSION = "0.6.3"
# Ollama's default temperature (Modelfile docs) is 0.8.
DEFAULT_TEMPERATURE = 0.8
# Ollama writes "never expires" as a date far in the future.
NEVER_EXPIRES = "2318-11-25T00:00:00Z"


def _options(body: dict[str, Any]) -> params.GenerationOptions:
    """Read the `options` object (temperature, top_p, seed, num_predict, stop)."""
    # Structured output, images, tools and fill-in-the-middle are not implemented: say so.
    reject_unsupported(body, ("format", "images", "tools", "suffix", "template"))
    options = optional_dict(body, "options")
    num_predict = params.optional_number(
        options, "num_predict", "options.num_predict", integer=True, minimum=-2
    )
    if num_predict == 0:
        raise InvalidRequest(
            "'options.num_predict' must be positive, -1 (no limit) or -2 (fill the context)",
            param="options.num_predict",
        )
    # -1 and -2 both mean "until the context is full"; the budget clamps to it.
    max_tokens = None if num_predict is None else int(num_predict)
    if max_tokens is not None and max_tokens < 0:
        max_tokens = 2**31
    return params.GenerationOptions(
        sampling=params.sampling(
            options, prefix="options.", default_temperature=DEFAULT_TEMPERATURE
        ),
        max_tokens=max_tokens,
        stop=params.stop_sequences(options.get("stop"), "options.stop"),
    )


def _ndjson(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":")) + "\n"


def _now() -> str:
    return rfc3339(time.time())


class OllamaRoutes:
    """Handlers bound to one model provider."""

    def __init__(self, provider: ModelProvider) -> None:
        self.provider = provider

    def routes(self) -> list[Route]:
        """List the routes to mount."""
        return [
            Route("/", self.root, methods=["GET", "HEAD"]),
            Route("/api/version", self.version, methods=["GET"]),
            Route("/api/tags", self.tags, methods=["GET"]),
            Route("/api/ps", self.ps, methods=["GET"]),
            Route("/api/show", self.show, methods=["POST"]),
            Route("/api/generate", self.generate, methods=["POST"]),
            Route("/api/chat", self.chat, methods=["POST"]),
        ]

    async def root(self, request: Request) -> Response:
        """Answer like Ollama does, so probes written for it work here."""
        return PlainTextResponse("Ollama is running")

    async def version(self, request: Request) -> Response:
        """Report the Ollama API version this server follows."""
        return JSONResponse({"version": OLLAMA_API_VERSION})

    async def tags(self, request: Request) -> Response:
        """List servable models with Ollama's model fields."""
        models = []
        for name in self.provider.catalog.names():
            entry = self.provider.catalog.resolve(name)
            models.append(
                {
                    "name": name,
                    "model": name,
                    "modified_at": rfc3339(entry.modified_at),
                    "size": entry.size_bytes,
                    "digest": entry.digest,
                    "details": entry.details(),
                }
            )
        return JSONResponse({"models": models})

    async def ps(self, request: Request) -> Response:
        """List loaded models and when they expire."""
        models = []
        for loaded in self.provider.loaded():
            entry = loaded.entry
            expires = (
                NEVER_EXPIRES if loaded.expires_at_wall is None else rfc3339(loaded.expires_at_wall)
            )
            models.append(
                {
                    "name": entry.name,
                    "model": entry.name,
                    "size": loaded.size_bytes,
                    "digest": entry.digest,
                    "details": entry.details(),
                    "expires_at": expires,
                    # Apple silicon has unified memory: all of it counts as "VRAM".
                    "size_vram": loaded.size_bytes,
                    "context_length": loaded.context_length,
                }
            )
        return JSONResponse({"models": models})

    async def show(self, request: Request) -> Response:
        """Describe a model: details, template, and config as model_info."""
        body = await read_json(request)
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("'model' is required", param="model")
        entry = self.provider.catalog.resolve(name)
        config = entry.config()
        template = ""
        tokenizer_config = entry.path / "tokenizer_config.json"
        if tokenizer_config.is_file():
            template = str(json.loads(tokenizer_config.read_text()).get("chat_template") or "")
        details = entry.details()
        model_info = {
            f"{details['family']}.{k}": v
            for k, v in config.items()
            if isinstance(v, int | float | str | bool)
        }
        model_info["general.architecture"] = details["family"]
        return JSONResponse(
            {
                "modelfile": f"# served by mlx_server\nFROM {entry.path}\n",
                "parameters": "",
                "template": template,
                "details": details,
                "model_info": model_info,
                "capabilities": ["completion"],
                "modified_at": rfc3339(entry.modified_at),
            }
        )

    async def generate(self, request: Request) -> Response:
        """Complete a prompt (templated unless `raw`)."""
        body = await read_json(request)
        model_name = required_str(body, "model")
        prompt = body.get("prompt") or ""
        if not isinstance(prompt, str):
            raise InvalidRequest("'prompt' must be a string", param="prompt")
        system = body.get("system")
        if system is not None and not isinstance(system, str):
            raise InvalidRequest("'system' must be a string", param="system")
        raw = optional_bool(body, "raw", False)
        context = body.get("context")
        if context is not None and not (
            isinstance(context, list) and all(isinstance(t, int) for t in context)
        ):
            raise InvalidRequest("'context' must be a list of token ids", param="context")
        keep_alive = params.keep_alive(body.get("keep_alive"))
        stream = optional_bool(body, "stream", True)
        if not prompt:
            # docs/api.md: an empty prompt loads the model, or unloads it with keep_alive 0.
            return await self._load_or_unload(model_name, keep_alive, chat=False)
        options = _options(body)

        def build(model: LoadedModel) -> list[int]:
            if raw:
                tokens = encode_text(model.tokenizer, prompt)
            else:
                messages = [{"role": "system", "content": system}] if system else []
                messages.append({"role": "user", "content": prompt})
                tokens = encode_chat(model.tokenizer, messages)
            if context:
                # The context of a previous answer already holds BOS and the template.
                return list(context) + encode_text_no_special(model.tokenizer, tokens)
            return tokens

        chars = len(prompt) + len(system or "")
        lease = await self._start(model_name, build, chars, options, keep_alive, "prompt")
        return await self._respond(request, lease, model_name, stream, chat=False, raw=raw)

    async def chat(self, request: Request) -> Response:
        """Answer a conversation using the model's chat template."""
        body = await read_json(request)
        model_name = required_str(body, "model")
        if "messages" not in body:
            raise InvalidRequest("'messages' is required", param="messages")
        messages = validate_messages(body.get("messages"))
        keep_alive = params.keep_alive(body.get("keep_alive"))
        stream = optional_bool(body, "stream", True)
        if not messages:
            return await self._load_or_unload(model_name, keep_alive, chat=True)
        options = _options(body)

        def build(model: LoadedModel) -> list[int]:
            return encode_chat(model.tokenizer, messages)

        chars = sum(len(m["content"]) for m in messages)
        lease = await self._start(model_name, build, chars, options, keep_alive, "messages")
        return await self._respond(request, lease, model_name, stream, chat=True, raw=False)

    async def _load_or_unload(
        self, model_name: str, keep_alive: float | None, *, chat: bool
    ) -> Response:
        if keep_alive == 0:
            await self.provider.unload_when_idle(model_name)
            reason = "unload"
        else:
            model, _ = await self.provider.acquire(model_name)
            self.provider.release(model, keep_alive)
            reason = "load"
        payload: dict[str, Any] = {"model": model_name, "created_at": _now()}
        if chat:
            payload["message"] = {"role": "assistant", "content": ""}
        else:
            payload["response"] = ""
        payload.update({"done_reason": reason, "done": True})
        return JSONResponse(payload)

    async def _start(
        self,
        model_name: str,
        build: Any,
        prompt_chars: int,
        options: params.GenerationOptions,
        keep_alive: float | None,
        prompt_param: str,
    ) -> Lease:
        return await start_generation(
            self.provider,
            model_name=model_name,
            build_prompt=build,
            prompt_chars=prompt_chars,
            options=options,
            keep_alive_s=keep_alive,
            prompt_param=prompt_param,
            max_tokens_param="options.num_predict",
            clamp=True,
        )

    def _final(
        self, lease: Lease, model_name: str, text: str, *, chat: bool, raw: bool
    ) -> dict[str, Any]:
        stats = lease.generation.stats
        payload: dict[str, Any] = {"model": model_name, "created_at": _now()}
        if chat:
            payload["message"] = {"role": "assistant", "content": text}
        else:
            payload["response"] = text
        payload.update(
            {
                "done": True,
                "done_reason": stats.finish_reason or "stop",
                "total_duration": stats.total_ns,
                "load_duration": stats.load_ns,
                # Ollama documents this as the number of tokens in the prompt: prompt-cached
                # ones count too; the duration is the time actually spent (shorter on a hit).
                "prompt_eval_count": stats.prompt_tokens,
                "prompt_eval_duration": stats.prompt_eval_ns,
                "eval_count": stats.completion_tokens,
                "eval_duration": stats.eval_ns,
            }
        )
        if not chat and not raw:
            # docs/api.md: raw mode returns no context.
            payload["context"] = lease.generation.prompt_token_ids + stats.token_ids
        return payload

    async def _respond(
        self,
        request: Request,
        lease: Lease,
        model_name: str,
        stream: bool,
        *,
        chat: bool,
        raw: bool,
    ) -> Response:
        if stream:
            return ClosingStream(
                self._stream(lease, model_name, chat=chat, raw=raw),
                on_close=lease.close,
                media_type="application/x-ndjson",
            )
        try:
            text = await unless_disconnected(request, lease.generation.text)
        except ClientGone:
            return Response(status_code=499)
        finally:
            lease.release()
        return JSONResponse(self._final(lease, model_name, text, chat=chat, raw=raw))

    async def _stream(
        self, lease: Lease, model_name: str, *, chat: bool, raw: bool
    ) -> AsyncIterator[str]:
        """Frame pieces as NDJSON; report a mid-stream failure as a final error object."""
        try:
            async for piece in lease.generation.pieces():
                payload: dict[str, Any] = {"model": model_name, "created_at": _now()}
                if chat:
                    payload["message"] = {"role": "assistant", "content": piece}
                else:
                    payload["response"] = piece
                payload["done"] = False
                yield _ndjson(payload)
            yield _ndjson(self._final(lease, model_name, "", chat=chat, raw=raw))
        except APIError as exc:
            # Headers are sent already; Ollama reports stream errors as {"error": ...} lines.
            yield _ndjson({"error": exc.message})
        finally:
            lease.release()


def encode_text_no_special(tokenizer: Any, tokens: list[int]) -> list[int]:
    """Strip a leading BOS so a continued context does not carry two of them."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return tokens[1:] if tokens and bos is not None and tokens[0] == bos else tokens
