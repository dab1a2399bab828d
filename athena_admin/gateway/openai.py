"""OpenAI's API: GET /v1/models, POST /v1/completions and /v1/chat/completions.

Wire format: https://platform.openai.com/docs/api-reference (chat, completions, streaming).
Streams are Server-Sent Events, ``data: <compact json>\\n\\n`` per chunk, ending with
``data: [DONE]``. A chat stream's first chunk carries ``delta.role``; the last content chunk is
an empty delta with ``finish_reason``; ``stream_options.include_usage`` adds ``"usage": null``
to every chunk and one more chunk with ``choices: []`` and the usage. An error after the
stream started is a ``data: {"error": {...}}`` event (the openai SDK raises APIError on it),
and the stream ends there. Errors: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from athena_admin.gateway.answer import Renderer, RoutedAnswer, Timing
from athena_admin.gateway.errors import GatewayError, from_routing_error, invalid
from athena_admin.gateway.wire import (
    bool_field,
    compact,
    int_field,
    model_field,
    read_object,
    reject_if_set,
)
from routing import MAX_MODEL_NAME, Finish, GenerationRequest, InvalidRequest, RoutingError

__all__ = ["JSON_MEDIA_TYPE", "OpenAIRenderer", "error_body", "error_status", "routes"]

PROTOCOL = "openai"  # the `protocol` label of the gateway's request metrics
JSON_MEDIA_TYPE = b"application/json"
SSE_MEDIA_TYPE = b"text/event-stream; charset=utf-8"
_DONE = b"data: [DONE]\n\n"
_FIELD_NAMES: dict[str, str] = {}  # routing's argument names are OpenAI's own


def error_body(error: GatewayError) -> bytes:
    return compact(
        {
            "error": {
                "message": error.message,
                "type": error.kind,
                "param": error.param,
                "code": error.code,
            }
        }
    ).encode()


def error_status(error: GatewayError) -> int:
    # Every target at capacity: 429, the status OpenAI's SDKs retry (with Retry-After).
    return 429 if error.overloaded else error.status


def _json(obj: Any) -> Response:
    return Response(compact(obj).encode(), media_type=JSON_MEDIA_TYPE.decode())


def _finish_reason(finish: Finish) -> str:
    # Ollama's done_reason uses the same words for the two that matter (stop, length).
    reason = finish.finish_reason
    return reason if reason in ("stop", "length", "content_filter", "tool_calls") else "stop"


def _usage(finish: Finish) -> dict[str, int]:
    prompt = finish.prompt_tokens or 0
    completion = finish.completion_tokens or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class OpenAIRenderer(Renderer):
    protocol = sys.modules[__name__]
    media_type = JSON_MEDIA_TYPE
    stream_media_type = SSE_MEDIA_TYPE
    field_names = _FIELD_NAMES

    def __init__(self, model: str, *, chat: bool, include_usage: bool = False) -> None:
        super().__init__(model, chat=chat)
        self.include_usage = include_usage
        self.id = ("chatcmpl-" if chat else "cmpl-") + os.urandom(12).hex()
        self.created = int(time.time())
        self._object = "chat.completion.chunk" if chat else "text_completion"
        # A streamed piece is its text spliced into a frame made once per answer: as a dict
        # through json it cost 8-12 us more per piece, 130-200 us of a streamed request's
        # ~800 us (16 pieces; bench/gateway_cpu.py, docs/benchmarks.md). The frame is
        # _event()'s output for one piece, cut where the text goes.
        # (rpartition: the text comes after the model name, which might hold the marker too)
        frame = self._event([self._choice("\0", None)])
        self._piece_open, _, self._piece_close = frame.rpartition(compact("\0"))

    def _event(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> str:
        """One SSE event: a chunk object (every chunk has the same id, created and model)."""
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": self._object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage  # null on every chunk but the last (stream_options)
        return "data: " + compact(chunk) + "\n\n"

    def _choice(self, text: str | None, finish_reason: str | None) -> dict[str, Any]:
        if self.chat:
            delta = {} if text is None else {"content": text}
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        choice = {"text": text or "", "index": 0, "logprobs": None}
        choice["finish_reason"] = finish_reason
        return choice

    def _role_event(self) -> str:
        delta = {"role": "assistant", "content": ""}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return self._event([choice])

    def piece(self, text: str, first: bool) -> bytes:
        frame = self._piece_open + compact(text) + self._piece_close
        if first and self.chat:
            frame = self._role_event() + frame
        return frame.encode()

    def stream_end(self, finish: Finish, timing: Timing, first: bool) -> bytes:
        frames = self._role_event() if first and self.chat else ""
        frames += self._event([self._choice(None, _finish_reason(finish))])
        if self.include_usage:
            frames += self._event([], _usage(finish))
        return frames.encode() + _DONE

    def stream_error(self, error: GatewayError) -> bytes:
        return b"data: " + error_body(error) + b"\n\n"

    def whole(self, text: str, finish: Finish, timing: Timing) -> bytes:
        if self.chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": _finish_reason(finish),
            }
        else:
            choice = {
                "text": text,
                "index": 0,
                "logprobs": None,
                "finish_reason": _finish_reason(finish),
            }
        return compact(
            {
                "id": self.id,
                "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created,
                "model": self.model,
                "choices": [choice],
                "usage": _usage(finish),
            }
        ).encode()


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    n = int_field(body, "n", "n")
    if n is not None and n != 1:
        raise invalid("n", "n must be 1: the Athena gateway returns one choice")
    max_tokens = int_field(body, "max_completion_tokens", "max_completion_tokens")
    if max_tokens is None:
        max_tokens = int_field(body, "max_tokens", "max_tokens")
    return {
        "temperature": body.get("temperature"),
        "max_tokens": max_tokens,
        "top_p": body.get("top_p"),
        "stop": body.get("stop"),
        "seed": body.get("seed"),
    }


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise invalid("stream_options", "stream_options must be an object")
    return bool_field(options, "include_usage", False)


def _build(**kwargs: Any) -> GenerationRequest:
    try:
        return GenerationRequest.build(**kwargs)
    except InvalidRequest as exc:
        raise from_routing_error(
            exc, field_names=_FIELD_NAMES, available=None, operator=False
        ) from None


async def _translate(request: Request, exc: RoutingError, model: str) -> GatewayError:
    principal = getattr(request.state, "principal", None)
    return await request.app.state.gateway.translate(
        exc, _FIELD_NAMES, operator=principal is not None and principal.operator, model=model
    )


def _answer(request: Request, generation: GenerationRequest, renderer: Renderer) -> RoutedAnswer:
    request.state.model = generation.model  # for the gateway's request metrics
    return RoutedAnswer(
        request.app.state.gateway,
        generation,
        renderer,
        principal=getattr(request.state, "principal", None),
        started=request.state.started,
    )


def _content(content: Any, i: int) -> str:
    """A message's text: a string, or the text parts of a content-part list."""
    if content is None:
        return ""  # an assistant turn that only called tools
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise invalid("messages", f"messages[{i}].content: only text parts are supported")
            texts.append(part["text"])
        return "".join(texts)
    raise invalid("messages", f"messages[{i}].content must be a string or a list of text parts")


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if messages is None:
        raise invalid("messages", "messages is required")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "messages must be a non-empty list of {role, content} objects")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid("messages", f"messages[{i}] must be an object")
        role = message.get("role")
        # "developer" is the newer name of "system" for reasoning models.
        out.append(
            {
                "role": "system" if role == "developer" else role,
                "content": _content(message.get("content"), i),
            }
        )
    return out


async def chat_completions(request: Request) -> RoutedAnswer:
    """POST /v1/chat/completions."""
    body = await read_object(request.scope, request.receive)
    model = model_field(body)
    stream = bool_field(body, "stream", False)
    reject_if_set(
        body, ("tools", "functions", "logprobs"), "the router carries plain chat messages only"
    )
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        raise invalid(
            "response_format",
            "response_format other than text is not supported by the Athena gateway",
        )
    generation = _build(model=model, messages=_messages(body), stream=stream, **_sampling(body))
    renderer = OpenAIRenderer(model, chat=True, include_usage=stream and _include_usage(body))
    return _answer(request, generation, renderer)


async def completions(request: Request) -> RoutedAnswer:
    """POST /v1/completions."""
    body = await read_object(request.scope, request.receive)
    model = model_field(body)
    stream = bool_field(body, "stream", False)
    reject_if_set(
        body, ("echo", "logprobs", "suffix", "best_of"), "the router returns plain text only"
    )
    prompt = body.get("prompt")
    if prompt is None:
        raise invalid("prompt", "prompt is required")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise invalid("prompt", "prompt must be a string or a list of one string")
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise invalid("prompt", f"prompt must be a string, got {type(prompt).__name__}")
    generation = _build(model=model, prompt=prompt, stream=stream, **_sampling(body))
    renderer = OpenAIRenderer(model, chat=False, include_usage=stream and _include_usage(body))
    return _answer(request, generation, renderer)


def _model_object(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "athena"}


async def list_models(request: Request) -> Response:
    """GET /v1/models: the registry's enabled models."""
    gateway = request.app.state.gateway
    try:
        routes_ = await gateway.catalog.routes()
    except RoutingError as exc:
        raise await _translate(request, exc, "") from None
    created = int(gateway.catalog.started_at)
    return _json({"object": "list", "data": [_model_object(r.model, created) for r in routes_]})


async def retrieve_model(request: Request) -> Response:
    """GET /v1/models/{model}."""
    gateway = request.app.state.gateway
    name = request.path_params["model"]
    if len(name) > MAX_MODEL_NAME:
        raise invalid("model", f"model must be at most {MAX_MODEL_NAME} characters")
    try:
        await gateway.router.route(name)
    except RoutingError as exc:
        raise await _translate(request, exc, name) from None
    return _json(_model_object(name, int(gateway.catalog.started_at)))


def routes() -> list[Route]:
    return [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    ]
