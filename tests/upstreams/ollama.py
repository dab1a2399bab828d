"""A test server speaking Ollama's native API, byte for byte.

Sources, field by field:
- Endpoints, request fields and example answers: ollama/ollama docs/api.md
  ("Generate a completion", "Generate a chat completion", "List Local Models").
- Field order and omission: the Go structs in ollama/ollama api/types.go.
  GenerateResponse: model, created_at, response, done, done_reason (omitempty), context
  (omitempty), then Metrics. ChatResponse: model, created_at, message {role, content},
  done_reason (omitempty), done, then Metrics. Metrics: total_duration, load_duration,
  prompt_eval_count, prompt_eval_duration, eval_count, eval_duration, all omitempty, so
  only the final chunk carries them. Durations are integer nanoseconds (docs: "Durations").
- Encoding: Go's encoding/json, so compact separators and <, >, & escaped as \\u003c, \\u003e,
  \\u0026; ``created_at`` is a UTC time.Time in RFC 3339 with nanoseconds, trailing zeros
  trimmed (time.RFC3339Nano), e.g. ``2024-07-22T20:47:51.147561Z``.
- Streaming (the default; ``"stream": false`` turns it off): one JSON object per line, each
  ending in "\\n", Content-Type application/x-ndjson (server/routes.go streamResponse).
  Non-streamed answers: one object, no trailing newline, application/json; charset=utf-8 (gin).
- Errors: ``{"error": "<message>"}`` with the HTTP status; once a stream has started, an error
  arrives as such a line in a 200 response. Unknown model: 404
  ``model "<name>" not found, try pulling it first``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.upstreams._wire import answer_words, paced
from tests.upstreams.behavior import Behavior

__all__ = ["ollama_app", "go_json", "rfc3339nano"]

JSON = "application/json; charset=utf-8"
NDJSON = "application/x-ndjson"


def go_json(obj: Any) -> str:
    """Encode like Go's json.Marshal: compact, UTF-8, HTML characters escaped."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def rfc3339nano(ns: int | None = None) -> str:
    """Format a UTC time like Go's time.RFC3339Nano (fraction with trailing zeros trimmed)."""
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    fraction = f"{frac:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def _error(status: int, message: str) -> Response:
    return Response(go_json({"error": message}), status_code=status, media_type=JSON)


def ollama_app(behavior: Behavior | None = None) -> Starlette:
    """Build the app; ``behavior`` (shared, mutable) sets the answers and the faults."""
    b = behavior if behavior is not None else Behavior()

    async def generate(request: Request) -> Response:
        return await _answer(request, chat=False)

    async def chat(request: Request) -> Response:
        return await _answer(request, chat=True)

    async def _answer(request: Request, *, chat: bool) -> Response:
        started = time.perf_counter_ns()
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "invalid character looking for beginning of value")
        b.requests.append(body)
        if b.delay:
            await asyncio.sleep(b.delay)
        model = body.get("model", "")
        if not model:
            return _error(400, "model is required")
        if b.models is not None and model not in b.models:
            return _error(404, f'model "{model}" not found, try pulling it first')
        if b.status >= 400:
            return _error(b.status, b.error_message)
        if b.load_ms is not None:
            await asyncio.sleep(b.load_ms / 1000)  # loading the model into memory
        options = body.get("options") or {}
        words, done_reason = answer_words(b, options.get("num_predict"))
        prompt_source = body.get("messages") if chat else body.get("prompt")
        prompt_tokens = max(1, len(json.dumps(prompt_source)) // 4)
        stream = body.get("stream", True) is not False

        def head() -> dict[str, Any]:
            return {"model": model, "created_at": rfc3339nano()}

        def final(text: str) -> dict[str, Any]:
            total = time.perf_counter_ns() - started
            obj = head()
            if chat:
                obj["message"] = {"role": "assistant", "content": text}
                obj["done_reason"] = done_reason
                obj["done"] = True
            else:
                obj["response"] = text
                obj["done"] = True
                obj["done_reason"] = done_reason
                obj["context"] = [1, 2, 3]
            obj.update(
                total_duration=total,
                load_duration=int(b.load_ms * 1e6) if b.load_ms is not None else total // 20 or 1,
                prompt_eval_count=prompt_tokens,
                prompt_eval_duration=total // 10 or 1,
                eval_count=len(words),
                eval_duration=total // 2 or 1,
            )
            return obj

        if not stream:
            if b.malformed:
                return Response('{"model":"' + model + '","response":', media_type=JSON)
            if b.fail_before_content:
                return _error(200, b.error_message)
            return Response(go_json(final("".join(words))), media_type=JSON)

        async def lines() -> AsyncIterator[str]:
            if b.malformed:
                yield "{not json\n"
                return
            if b.fail_before_content:
                yield go_json({"error": b.error_message}) + "\n"
                return
            async for _, word in paced(b, words):
                obj = head()
                if chat:
                    obj["message"] = {"role": "assistant", "content": word}
                else:
                    obj["response"] = word
                obj["done"] = False
                yield go_json(obj) + "\n"
            if b.end_early_after is not None:
                return
            yield go_json(final("")) + "\n"

        return StreamingResponse(lines(), media_type=NDJSON)

    async def tags(request: Request) -> Response:
        names = b.models if b.models is not None else ("llama3.2:latest",)
        models = [
            {
                "name": n,
                "model": n,
                "modified_at": rfc3339nano(),
                "size": 2019393189,
                "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "llama",
                    "families": ["llama"],
                    "parameter_size": "3.2B",
                    "quantization_level": "Q4_K_M",
                },
            }
            for n in names
        ]
        return Response(go_json({"models": models}), media_type=JSON)

    async def version(request: Request) -> Response:
        return Response(go_json({"version": "0.6.3"}), media_type=JSON)

    async def root(request: Request) -> Response:
        return Response("Ollama is running", media_type="text/plain; charset=utf-8")

    return Starlette(
        routes=[
            Route("/", root, methods=["GET", "HEAD"]),
            Route("/api/generate", generate, methods=["POST"]),
            Route("/api/chat", chat, methods=["POST"]),
            Route("/api/tags", tags, methods=["GET"]),
            Route("/api/version", version, methods=["GET"]),
        ]
    )
