"""OpenAI-compatible routes: /v1/models, /v1/completions, /v1/chat/completions.

Wire format per OpenAI's API reference: non-streaming answers carry `usage`; streaming
answers are server-sent events, one JSON chunk per `data:` line, ending `data: [DONE]`.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import embeddings, logprobs, params
from .answer import AnswerSplitter, Parts, answer_splitter
from .capabilities import capabilities_of
from .errors import APIError, ClientGone, InvalidRequest
from .prompts import encode_chat, encode_text, validate_messages
from .provider import LoadedModel, ModelProvider
from .session import Lease, embed_inputs, start_generation, unless_disconnected
from .structured import openai_response_format
from .tool_calls import openai_call_deltas
from .tools import parse_tools, prompt_with_tools
from .wire import (
    ClosingStream,
    optional_bool,
    optional_dict,
    read_json,
    reject_unsupported,
    required_str,
)

# OpenAI's documented default temperature is 1.
DEFAULT_TEMPERATURE = 1.0


def _options(body: dict[str, Any]) -> params.GenerationOptions:
    """Read sampling, max_tokens and stop from an OpenAI request body."""
    # Legacy function calling is not implemented: say so.
    reject_unsupported(body, ("functions", "function_call"))
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequest("only n=1 is supported", param="n")
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = params.optional_number(body, key, key, integer=True, minimum=1)
    return params.GenerationOptions(
        sampling=params.sampling(body, default_temperature=DEFAULT_TEMPERATURE),
        max_tokens=None if max_tokens is None else int(max_tokens),
        stop=params.stop_sequences(body.get("stop"), "stop"),
        constraint=openai_response_format(body),
    )


def _completion_prompt(body: dict[str, Any]) -> str | list[int]:
    """Accept a string, a one-string list, or a list of token ids."""
    prompt = body.get("prompt")
    if prompt is None or prompt == "" or prompt == []:
        raise InvalidRequest("'prompt' is required", param="prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in prompt
    ):
        return prompt
    raise InvalidRequest(
        "'prompt' must be a string or a list of token ids (batches are not supported)",
        param="prompt",
    )


def _usage(lease: Lease) -> dict[str, Any]:
    stats = lease.generation.stats
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
        # OpenAI's field for prompt tokens served from a cache; `prompt_tokens` counts them.
        "prompt_tokens_details": {"cached_tokens": stats.cached_tokens},
    }


def _logprobs(lease: Lease, chat: bool, offset: int) -> dict[str, Any] | None:
    """`choice.logprobs` for the tokens received since the last call; None if not asked."""
    if lease.generation.handle.top_logprobs is None:
        return None
    entries = lease.generation.take_logprobs()
    tokenizer = lease.model.tokenizer
    if chat:
        return logprobs.openai_chat(tokenizer, entries)
    return logprobs.openai_completion(tokenizer, entries, offset)


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


class OpenAIRoutes:
    """Handlers bound to one model provider."""

    def __init__(self, provider: ModelProvider) -> None:
        self.provider = provider

    def routes(self) -> list[Route]:
        """List the routes to mount."""
        return [
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", self.get_model, methods=["GET"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
        ]

    async def _model_card(self, name: str) -> dict[str, Any]:
        entry = self.provider.catalog.resolve(name)
        return {
            "id": name,
            "object": "model",
            "created": int(entry.modified_at),
            "owned_by": "mlx",
            # Not an OpenAI field: Ollama's list (/api/show), so clients can tell before sending.
            "capabilities": await capabilities_of(self.provider, entry),
        }

    async def list_models(self, request: Request) -> Response:
        """List every servable model, aliases included."""
        data = [await self._model_card(name) for name in self.provider.catalog.names()]
        return JSONResponse({"object": "list", "data": data})

    async def get_model(self, request: Request) -> Response:
        """Describe one model."""
        return JSONResponse(await self._model_card(request.path_params["model_id"]))

    async def completions(self, request: Request) -> Response:
        """Complete a raw prompt."""
        body = await read_json(request)
        model_name = required_str(body, "model")
        prompt = _completion_prompt(body)
        reject_unsupported(body, ("tools", "tool_choice", "top_logprobs"))  # chat only
        options = dataclasses.replace(
            _options(body), top_logprobs=logprobs.completion_request(body)
        )
        stream = optional_bool(body, "stream", False)

        def build(model: LoadedModel) -> list[int]:
            return (
                list(prompt) if isinstance(prompt, list) else encode_text(model.tokenizer, prompt)
            )

        chars = len(prompt) if isinstance(prompt, str) else 0
        lease = await self._start(model_name, build, chars, options, "prompt", body)
        return await self._respond(request, lease, model_name, body, stream, chat=False)

    async def chat_completions(self, request: Request) -> Response:
        """Answer a conversation using the model's chat template."""
        body = await read_json(request)
        model_name = required_str(body, "model")
        messages = validate_messages(body.get("messages"))
        if not messages:
            raise InvalidRequest("'messages' must not be empty", param="messages")
        options = dataclasses.replace(_options(body), top_logprobs=logprobs.chat_request(body))
        tool_request = parse_tools(body, with_choice=True)
        enforced = tool_request.constraint()
        if enforced is not None:
            if options.constraint is not None:
                raise InvalidRequest(
                    "'response_format' and an enforced tool call cannot both apply",
                    param="response_format",
                )
            options = dataclasses.replace(options, constraint=enforced)
        stream = optional_bool(body, "stream", False)

        def build(model: LoadedModel) -> list[int]:
            chat, tools = prompt_with_tools(model.tokenizer, messages, tool_request, model_name)
            return encode_chat(model.tokenizer, chat, tools)

        chars = sum(len(m["content"]) for m in messages) + tool_request.text_size()
        lease = await self._start(model_name, build, chars, options, "messages", body)
        splitter = answer_splitter(
            lease.model.tokenizer, lease.generation.prompt_token_ids, tool_request, None
        )
        return await self._respond(
            request, lease, model_name, body, stream, chat=True, splitter=splitter
        )

    async def embeddings(self, request: Request) -> Response:
        """Embed inputs with a loaded language model (see embeddings.py for the pooling)."""
        body = await read_json(request)
        model_name = required_str(body, "model")
        wanted = embeddings.openai_request(body)
        result = await embed_inputs(
            self.provider, model_name, wanted, keep_alive_s=None, param="input"
        )
        return JSONResponse(
            embeddings.openai_answer(result.vectors, wanted, model_name, result.prompt_tokens)
        )

    async def _start(
        self,
        model_name: str,
        build: Any,
        prompt_chars: int,
        options: params.GenerationOptions,
        prompt_param: str,
        body: dict[str, Any],
    ) -> Lease:
        max_param = (
            "max_completion_tokens"
            if body.get("max_completion_tokens") is not None
            else "max_tokens"
        )
        return await start_generation(
            self.provider,
            model_name=model_name,
            build_prompt=build,
            prompt_chars=prompt_chars,
            options=options,
            keep_alive_s=None,
            prompt_param=prompt_param,
            max_tokens_param=max_param,
            clamp=False,
        )

    async def _respond(
        self,
        request: Request,
        lease: Lease,
        model_name: str,
        body: dict[str, Any],
        stream: bool,
        *,
        chat: bool,
        splitter: AnswerSplitter | None = None,
    ) -> Response:
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        if stream:
            include_usage = bool(optional_dict(body, "stream_options").get("include_usage"))
            events = self._stream(lease, ident, created, model_name, chat, include_usage, splitter)
            return ClosingStream(
                events,
                on_close=lease.close,
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        try:
            text = await unless_disconnected(request, lease.generation.text)
        except ClientGone:
            return Response(status_code=499)
        finally:
            lease.release()
        finish = lease.generation.stats.finish_reason
        if chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if splitter is not None:
                parts = splitter.all_of(text)
                message["content"] = parts.content or (None if parts.calls else "")
                if parts.thinking:
                    # The field OpenAI-compatible reasoning servers use (vLLM, DeepSeek).
                    message["reasoning_content"] = parts.thinking
                if parts.calls:
                    message["tool_calls"] = [call.openai() for call in parts.calls]
                    finish = "tool_calls"
            choice: dict[str, Any] = {
                "index": 0,
                "message": message,
                "logprobs": _logprobs(lease, chat, 0),
                "finish_reason": finish,
            }
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": _logprobs(lease, chat, 0),
                "finish_reason": finish,
            }
        return JSONResponse(
            {
                "id": ident,
                "object": "chat.completion" if chat else "text_completion",
                "created": created,
                "model": model_name,
                "choices": [choice],
                "usage": _usage(lease),
            }
        )

    async def _stream(
        self,
        lease: Lease,
        ident: str,
        created: int,
        model_name: str,
        chat: bool,
        include_usage: bool,
        splitter: AnswerSplitter | None,
    ) -> AsyncIterator[str]:
        """Frame text pieces as SSE chunks; always release the model at the end."""
        kind = "chat.completion.chunk" if chat else "text_completion"
        offset = 0  # characters of text before a chunk (legacy completions' `text_offset`)

        def chunk(
            text: str | None,
            finish: str | None,
            first: bool = False,
            tool_calls: list[dict[str, Any]] | None = None,
            with_logprobs: bool = False,
            reasoning: str | None = None,
        ) -> dict[str, Any]:
            nonlocal offset
            if chat:
                delta: dict[str, Any] = {}
                if first:
                    delta["role"] = "assistant"
                if reasoning:
                    delta["reasoning_content"] = reasoning
                if text is not None:
                    delta["content"] = text
                if tool_calls:
                    delta["tool_calls"] = tool_calls
                choice: dict[str, Any] = {"index": 0, "delta": delta}
            else:
                choice = {"index": 0, "text": text or ""}
            choice["logprobs"] = _logprobs(lease, chat, offset) if with_logprobs else None
            if choice["logprobs"] is not None and not chat:
                offset += sum(len(token) for token in choice["logprobs"]["tokens"])
            choice["finish_reason"] = finish
            return {
                "id": ident,
                "object": kind,
                "created": created,
                "model": model_name,
                "choices": [choice],
            }

        try:
            if chat:
                yield _sse(chunk("", None, first=True))
            calls = 0

            def framed(parts: Parts) -> Iterator[str]:
                nonlocal calls
                if parts.thinking:
                    yield _sse(chunk(None, None, reasoning=parts.thinking))
                if parts.content:
                    yield _sse(chunk(parts.content, None, with_logprobs=True))
                for call in parts.calls:
                    for delta in openai_call_deltas(calls, call):
                        yield _sse(chunk(None, None, tool_calls=[delta]))
                    calls += 1

            async for piece in lease.generation.pieces():
                if splitter is None:
                    yield _sse(chunk(piece, None, with_logprobs=True))
                else:
                    for event in framed(splitter.feed(piece)):
                        yield event
            if splitter is not None:
                for event in framed(splitter.finish()):
                    yield event
            finish = "tool_calls" if calls else lease.generation.stats.finish_reason
            yield _sse(chunk(None if chat else "", finish, with_logprobs=True))
            if include_usage:
                yield _sse(
                    {
                        "id": ident,
                        "object": kind,
                        "created": created,
                        "model": model_name,
                        "choices": [],
                        "usage": _usage(lease),
                    }
                )
            yield "data: [DONE]\n\n"
        except APIError as exc:
            # Headers are sent already: report the failure as an error event, as OpenAI does.
            yield _sse(
                {
                    "error": {
                        "message": exc.message,
                        "type": exc.type,
                        "param": exc.param,
                        "code": exc.code,
                    }
                }
            )
            yield "data: [DONE]\n\n"
        finally:
            lease.release()
