"""A test server speaking the OpenAI HTTP API (as mlx_server, vLLM and llama.cpp do).

Sources (https://platform.openai.com/docs/api-reference):
- GET /v1/models: ``{"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}]}``.
- POST /v1/completions: ``{"id": "cmpl-…", "object": "text_completion", "created", "model",
  "choices": [{"text", "index", "logprobs", "finish_reason"}], "usage": {"prompt_tokens",
  "completion_tokens", "total_tokens"}}``.
- POST /v1/chat/completions: ``"object": "chat.completion"``, choices hold
  ``{"index", "message": {"role", "content", "refusal"}, "logprobs", "finish_reason"}``,
  plus ``usage`` and ``system_fingerprint``.
- Streaming (``"stream": true``): Server-Sent Events, ``data: <compact json>\\n\\n`` per chunk,
  ``"object": "chat.completion.chunk"`` (or ``text_completion``); the first chat delta carries
  the role, the last content chunk an empty delta with ``finish_reason``; with
  ``stream_options.include_usage`` every chunk has ``"usage": null`` and one more chunk with
  ``"choices": []`` carries the usage; the stream ends with ``data: [DONE]\\n\\n``.
- Non-streamed bodies are indented JSON, as api.openai.com sends them.
- Errors: ``{"error": {"message", "type", "param", "code"}}`` with the HTTP status; after a
  stream started, an error arrives as a ``data: {"error": …}`` event.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.upstreams._wire import answer_words, paced
from tests.upstreams.behavior import Behavior

__all__ = ["openai_app"]

SSE = "text/event-stream; charset=utf-8"
FINGERPRINT = "fp_athena_test"


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _error(
    status: int, message: str, kind: str = "invalid_request_error", code: str | None = None
) -> Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Response(json.dumps(body, indent=2), status_code=status, media_type="application/json")


def openai_app(behavior: Behavior | None = None) -> Starlette:
    """Build the app; ``behavior`` (shared, mutable) sets the answers and the faults."""
    b = behavior if behavior is not None else Behavior()

    async def completions(request: Request) -> Response:
        return await _answer(request, chat=False)

    async def chat_completions(request: Request) -> Response:
        return await _answer(request, chat=True)

    async def _answer(request: Request, *, chat: bool) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        b.requests.append(body)
        if b.delay:
            await asyncio.sleep(b.delay)
        model = body.get("model")
        if not model:
            return _error(400, "you must provide a model parameter")
        if b.models is not None and model not in b.models:
            return _error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        if b.status >= 400:
            kind = "server_error" if b.status >= 500 else "invalid_request_error"
            return _error(b.status, b.error_message, kind)
        words, finish_reason = answer_words(b, body.get("max_tokens"))
        source = body.get("messages") if chat else body.get("prompt")
        usage = {
            "prompt_tokens": max(1, len(json.dumps(source)) // 4),
            "completion_tokens": len(words),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        obj_kind = "chat.completion" if chat else "text_completion"

        if not body.get("stream"):
            if b.malformed:
                return Response(
                    '{"id": "' + ident + '", "choices": [', media_type="application/json"
                )
            if b.fail_before_content:
                return Response(
                    json.dumps(
                        {
                            "error": {
                                "message": b.error_message,
                                "type": "server_error",
                                "param": None,
                                "code": None,
                            }
                        }
                    ),
                    media_type="application/json",
                )
            text = "".join(words)
            if chat:
                choice: dict[str, Any] = {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            else:
                choice = {
                    "text": text,
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            answer = {
                "id": ident,
                "object": obj_kind,
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": usage,
                "system_fingerprint": FINGERPRINT,
            }
            return Response(
                json.dumps(answer, indent=2, ensure_ascii=False), media_type="application/json"
            )

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunk_kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(
            choices: list[dict[str, Any]], usage_value: Any = None, last: bool = False
        ) -> str:
            obj: dict[str, Any] = {
                "id": ident,
                "object": chunk_kind,
                "created": created,
                "model": model,
                "system_fingerprint": FINGERPRINT,
                "choices": choices,
            }
            if include_usage:
                obj["usage"] = usage_value
            return f"data: {_compact(obj)}\n\n"

        def choice_with(text: str | None, finish: str | None, role: bool = False) -> dict[str, Any]:
            if not chat:
                return {"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish}
            delta: dict[str, Any] = {}
            if role:
                delta = {"role": "assistant", "content": "", "refusal": None}
            elif text is not None:
                delta = {"content": text}
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

        async def events() -> AsyncIterator[str]:
            if b.malformed:
                yield "data: {not json\n\n"
                return
            if b.fail_before_content:
                yield (
                    "data: "
                    + _compact(
                        {
                            "error": {
                                "message": b.error_message,
                                "type": "server_error",
                                "param": None,
                                "code": None,
                            }
                        }
                    )
                    + "\n\n"
                )
                return
            if chat:
                yield chunk([choice_with(None, None, role=True)])
            async for _, word in paced(b, words):
                yield chunk([choice_with(word, None)])
            if b.end_early_after is not None:
                return
            yield chunk([choice_with(None if chat else "", finish_reason)])
            if include_usage:
                yield chunk([], usage)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type=SSE)

    async def models(request: Request) -> Response:
        names = b.models if b.models is not None else ("test-model",)
        data = [
            {"id": n, "object": "model", "created": 1700000000, "owned_by": "athena-test"}
            for n in names
        ]
        return Response(json.dumps({"object": "list", "data": data}), media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(json.dumps({"status": "ok"}), media_type="application/json")

    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
