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

from . import embeddings, logprobs, params
from .answer import AnswerSplitter, Parts, answer_splitter
from .capabilities import capabilities_of
from .catalog import rfc3339
from .errors import APIError, ClientGone, InvalidRequest
from .prompts import encode_chat, encode_text, validate_messages
from .provider import LoadedModel, ModelProvider
from .session import Lease, embed_inputs, start_generation, unless_disconnected
from .structured import ollama_format
from .thinking import check_think, ollama_think
from .tools import ToolRequest, parse_tools, prompt_with_tools
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
    # Images and fill-in-the-middle are not implemented: say so.
    reject_unsupported(body, ("images", "suffix", "template"))
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
        constraint=ollama_format(body),
        top_logprobs=logprobs.chat_request(body),
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
            Route("/api/embed", self.embed, methods=["POST"]),
            Route("/api/embeddings", self.legacy_embeddings, methods=["POST"]),
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
                "capabilities": await capabilities_of(self.provider, entry),
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
        reject_unsupported(body, ("tools",))  # /api/chat only, as in Ollama
        options = _options(body)
        think = ollama_think(body)

        def build(model: LoadedModel) -> list[int]:
            check_think(model.tokenizer, think, model_name)
            if raw:
                tokens = encode_text(model.tokenizer, prompt)
            else:
                messages = [{"role": "system", "content": system}] if system else []
                messages.append({"role": "user", "content": prompt})
                tokens = encode_chat(model.tokenizer, messages, think=think)
            if context:
                # The context of a previous answer already holds BOS and the template.
                return list(context) + encode_text_no_special(model.tokenizer, tokens)
            return tokens

        chars = len(prompt) + len(system or "")
        lease = await self._start(model_name, build, chars, options, keep_alive, "prompt")
        splitter = None
        if not raw:  # raw: the caller wrote the template, and reads the text as it is
            splitter = answer_splitter(
                lease.model.tokenizer, lease.generation.prompt_token_ids, ToolRequest(), think
            )
        return await self._respond(
            request, lease, model_name, stream, chat=False, raw=raw, splitter=splitter
        )

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
        # Ollama has no tool_choice: tools are offered, never enforced.
        tool_request = parse_tools(body, with_choice=False)
        think = ollama_think(body)

        def build(model: LoadedModel) -> list[int]:
            check_think(model.tokenizer, think, model_name)
            chat, tools = prompt_with_tools(model.tokenizer, messages, tool_request, model_name)
            return encode_chat(model.tokenizer, chat, tools, think)

        chars = sum(len(m["content"]) for m in messages) + tool_request.text_size()
        lease = await self._start(model_name, build, chars, options, keep_alive, "messages")
        splitter = answer_splitter(
            lease.model.tokenizer, lease.generation.prompt_token_ids, tool_request, think
        )
        return await self._respond(
            request, lease, model_name, stream, chat=True, raw=False, splitter=splitter
        )

    async def embed(self, request: Request) -> Response:
        """Embed one input or a batch (see embeddings.py for the pooling)."""
        body = await read_json(request)
        model_name = required_str(body, "model")
        wanted = embeddings.ollama_request(body, legacy=False)
        keep_alive = params.keep_alive(body.get("keep_alive"))
        result = await embed_inputs(
            self.provider, model_name, wanted, keep_alive_s=keep_alive, param="input"
        )
        return JSONResponse(
            {
                "model": model_name,
                "embeddings": embeddings.ollama_vectors(result.vectors, wanted),
                "total_duration": result.total_ns,
                "load_duration": result.load_ns,
                "prompt_eval_count": result.prompt_tokens,
            }
        )

    async def legacy_embeddings(self, request: Request) -> Response:
        """Embed one prompt: the `/api/embeddings` endpoint `/api/embed` replaced."""
        body = await read_json(request)
        model_name = required_str(body, "model")
        wanted = embeddings.ollama_request(body, legacy=True)
        keep_alive = params.keep_alive(body.get("keep_alive"))
        result = await embed_inputs(
            self.provider, model_name, wanted, keep_alive_s=keep_alive, param="prompt"
        )
        (vector,) = embeddings.ollama_vectors(result.vectors, wanted)
        return JSONResponse({"embedding": vector})

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
        self,
        lease: Lease,
        model_name: str,
        parts: Parts,
        *,
        chat: bool,
        raw: bool,
    ) -> dict[str, Any]:
        stats = lease.generation.stats
        payload = _part(model_name, parts, chat=chat)
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
        _add_logprobs(payload, lease)
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
        splitter: AnswerSplitter | None = None,
    ) -> Response:
        if stream:
            return ClosingStream(
                self._stream(lease, model_name, chat=chat, raw=raw, splitter=splitter),
                on_close=lease.close,
                media_type="application/x-ndjson",
            )
        try:
            text = await unless_disconnected(request, lease.generation.text)
        except ClientGone:
            return Response(status_code=499)
        finally:
            lease.release()
        parts = splitter.all_of(text) if splitter is not None else Parts(text)
        return JSONResponse(self._final(lease, model_name, parts, chat=chat, raw=raw))

    async def _stream(
        self,
        lease: Lease,
        model_name: str,
        *,
        chat: bool,
        raw: bool,
        splitter: AnswerSplitter | None = None,
    ) -> AsyncIterator[str]:
        """Frame pieces as NDJSON; report a mid-stream failure as a final error object."""

        def part(parts: Parts) -> str:
            payload = _part(model_name, parts, chat=chat)
            payload["done"] = False
            _add_logprobs(payload, lease)
            return _ndjson(payload)

        try:
            async for piece in lease.generation.pieces():
                if splitter is None:
                    yield part(Parts(piece))
                elif parts := splitter.feed(piece):
                    yield part(parts)
            if splitter is not None and (parts := splitter.finish()):
                yield part(parts)
            yield _ndjson(self._final(lease, model_name, Parts(), chat=chat, raw=raw))
        except APIError as exc:
            # Headers are sent already; Ollama reports stream errors as {"error": ...} lines.
            yield _ndjson({"error": exc.message})
        finally:
            lease.release()


def _add_logprobs(payload: dict[str, Any], lease: Lease) -> None:
    """Add the top-level `logprobs` of the tokens received since the last chunk, if asked."""
    if lease.generation.handle.top_logprobs is not None:
        entries = lease.generation.take_logprobs()
        payload["logprobs"] = logprobs.ollama(lease.model.tokenizer, entries)


def _part(model_name: str, parts: Parts, *, chat: bool) -> dict[str, Any]:
    """A chunk's or answer's head: `message` (chat) or `response` and `thinking` (generate)."""
    payload: dict[str, Any] = {"model": model_name, "created_at": _now()}
    if chat:
        payload["message"] = message(parts)
    else:
        payload["response"] = parts.content
        if parts.thinking:
            payload["thinking"] = parts.thinking
    return payload


def message(parts: Parts) -> dict[str, Any]:
    """An assistant message in Ollama's shape: thinking apart, tool calls with object
    arguments."""
    shaped: dict[str, Any] = {"role": "assistant", "content": parts.content}
    if parts.thinking:
        shaped["thinking"] = parts.thinking
    if parts.calls:
        shaped["tool_calls"] = [call.ollama() for call in parts.calls]
    return shaped


def encode_text_no_special(tokenizer: Any, tokens: list[int]) -> list[int]:
    """Strip a leading BOS so a continued context does not carry two of them."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return tokens[1:] if tokens and bos is not None and tokens[0] == bos else tokens
