"""Ollama's API, to the wire format of ollama/ollama docs/api.md.

Streaming is the default (``"stream": false`` turns it off): NDJSON, one object per line,
``application/x-ndjson``. The last object has ``done: true``, ``done_reason`` and the stats,
durations in nanoseconds. Field order follows the Go structs in api/types.go
(GenerateResponse: model, created_at, response, done, done_reason, context, metrics;
ChatResponse: model, created_at, message, done_reason, done, metrics), encoded like Go's
encoding/json. Errors are ``{"error": "..."}``; after a stream started, a final such line.

Not carried to the upstream (the router has no field for them): ``keep_alive``, ``raw``,
``template``, ``context``, ``think``; ``format``, ``images``, ``suffix`` and ``tools`` are
refused with 400 rather than silently dropped.
"""

from __future__ import annotations

import sys
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from athena_admin.gateway.answer import Renderer, RoutedAnswer, Timing
from athena_admin.gateway.catalog import route_digest
from athena_admin.gateway.errors import GatewayError, from_routing_error, invalid
from athena_admin.gateway.wire import (
    bool_field,
    go_json,
    int_field,
    model_field,
    read_object,
    reject_if_set,
    rfc3339nano,
)
from routing import Finish, GenerationRequest, InvalidRequest, RoutingError

__all__ = ["JSON_MEDIA_TYPE", "OllamaRenderer", "error_body", "error_status", "routes"]

# The Ollama release whose API this follows, as /api/version reports it (like mlx_server).
OLLAMA_API_VERSION = "0.6.3"
PROTOCOL = "ollama"  # the `protocol` label of the gateway's request metrics
JSON_MEDIA_TYPE = b"application/json; charset=utf-8"
NDJSON_MEDIA_TYPE = b"application/x-ndjson"
_FIELD_NAMES = {
    "temperature": "options.temperature",
    "max_tokens": "options.num_predict",
    "top_p": "options.top_p",
    "stop": "options.stop",
    "seed": "options.seed",
}


def error_body(error: GatewayError) -> bytes:
    return go_json({"error": error.message}).encode()


def error_status(error: GatewayError) -> int:
    return error.status  # at capacity: 503 with Retry-After (errors.GatewayError)


def _json(obj: Any, status: int = 200) -> Response:
    return Response(go_json(obj).encode(), status, media_type=JSON_MEDIA_TYPE.decode())


class OllamaRenderer(Renderer):
    protocol = sys.modules[__name__]
    media_type = JSON_MEDIA_TYPE
    stream_media_type = NDJSON_MEDIA_TYPE
    field_names = _FIELD_NAMES

    def __init__(self, model: str, *, chat: bool) -> None:
        super().__init__(model, chat=chat)
        # A streamed piece is its text spliced into a frame made once per answer: as a dict
        # through json it cost 6-8 us more per piece, 100-130 us of a streamed request's
        # ~800 us (16 pieces; bench/gateway_cpu.py, docs/benchmarks.md). Same bytes.
        self._head = '{"model":' + go_json(model) + ',"created_at":"'
        self._text_key = '","message":{"role":"assistant","content":' if chat else '","response":'
        self._tail = '},"done":false}\n' if chat else ',"done":false}\n'

    def piece(self, text: str, first: bool) -> bytes:
        return (self._head + rfc3339nano() + self._text_key + go_json(text) + self._tail).encode()

    def _final(self, text: str, finish: Finish, timing: Timing) -> dict[str, Any]:
        obj: dict[str, Any] = {"model": self.model, "created_at": rfc3339nano()}
        reason = finish.finish_reason or "stop"
        if self.chat:
            obj["message"] = {"role": "assistant", "content": text}
            obj["done_reason"] = reason
            obj["done"] = True
        else:
            obj["response"] = text
            obj["done"] = True
            obj["done_reason"] = reason
        obj.update(_metrics(finish, timing))
        return obj

    def stream_end(self, finish: Finish, timing: Timing, first: bool) -> bytes:
        return (go_json(self._final("", finish, timing)) + "\n").encode()

    def stream_error(self, error: GatewayError) -> bytes:
        return (go_json({"error": error.message}) + "\n").encode()

    def whole(self, text: str, finish: Finish, timing: Timing) -> bytes:
        return go_json(self._final(text, finish, timing)).encode()


def _metrics(finish: Finish, timing: Timing) -> dict[str, int]:
    """Ollama's final stats: the upstream's own when it is Ollama, else measured here.

    An OpenAI-protocol upstream reports no durations: total is the gateway's wall time,
    prompt evaluation the time to the first content, evaluation the rest (docs/gateway.md).
    """
    total = int((timing.ended - timing.started) * 1e9)
    if timing.first_content is not None:
        to_first = int((timing.first_content - timing.started) * 1e9)
    else:
        to_first = 0
    metrics = {
        "total_duration": finish.total_duration_ns
        if finish.total_duration_ns is not None
        else total,
        "load_duration": finish.load_duration_ns or 0,
    }
    if finish.prompt_tokens is not None:
        metrics["prompt_eval_count"] = finish.prompt_tokens
    metrics["prompt_eval_duration"] = (
        finish.prompt_eval_duration_ns if finish.prompt_eval_duration_ns is not None else to_first
    )
    if finish.completion_tokens is not None:
        metrics["eval_count"] = finish.completion_tokens
    metrics["eval_duration"] = (
        finish.eval_duration_ns if finish.eval_duration_ns is not None else total - to_first
    )
    return metrics


def _options(body: dict[str, Any]) -> dict[str, Any]:
    """Read ``options`` into routing's sampling arguments (Modelfile parameter names)."""
    options = body.get("options")
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise invalid("options", f"options must be an object, got {type(options).__name__}")
    num_predict = int_field(options, "num_predict", "options.num_predict")
    # -1 (no limit) and -2 (fill the context) leave the route's max_tokens in charge.
    max_tokens = num_predict if num_predict is not None and num_predict > 0 else None
    return {
        "temperature": options.get("temperature"),
        "max_tokens": max_tokens,
        "top_p": options.get("top_p"),
        "stop": options.get("stop"),
        "seed": options.get("seed"),
    }


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if messages is None:
        return []
    if not isinstance(messages, list):
        raise invalid("messages", "messages must be a list of {role, content} objects")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid("messages", f"messages[{i}] must be an object")
        if message.get("images"):
            raise invalid(
                "messages", f"messages[{i}].images is not supported by the Athena gateway"
            )
        content = message.get("content", "")
        out.append({"role": message.get("role"), "content": "" if content is None else content})
    return out


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


def _answer(request: Request, generation: GenerationRequest, *, chat: bool) -> RoutedAnswer:
    request.state.model = generation.model  # for the gateway's request metrics
    return RoutedAnswer(
        request.app.state.gateway,
        generation,
        OllamaRenderer(generation.model, chat=chat),
        principal=getattr(request.state, "principal", None),
        started=request.state.started,
    )


async def generate(request: Request) -> ASGIApp:
    """POST /api/generate: complete a prompt."""
    body = await read_object(request.scope, request.receive)
    model = model_field(body)
    stream = bool_field(body, "stream", True)
    reject_if_set(body, ("images", "format", "suffix"), "the router carries text prompts only")
    prompt = body.get("prompt")
    if prompt is None or prompt == "":
        # docs/api.md "Load a model": an empty prompt loads the model and answers at once.
        return await _load(request, model, chat=False)
    system = body.get("system")
    generation = _build(model=model, prompt=prompt, system=system, stream=stream, **_options(body))
    return _answer(request, generation, chat=False)


async def chat(request: Request) -> ASGIApp:
    """POST /api/chat: answer a conversation."""
    body = await read_object(request.scope, request.receive)
    model = model_field(body)
    stream = bool_field(body, "stream", True)
    reject_if_set(body, ("tools", "format"), "the router carries plain chat messages only")
    messages = _messages(body)
    if not messages:
        # docs/api.md "Load a model": an empty message list loads the model.
        return await _load(request, model, chat=True)
    generation = _build(model=model, messages=messages, stream=stream, **_options(body))
    return _answer(request, generation, chat=True)


async def _load(request: Request, model: str, *, chat: bool) -> Response:
    request.state.model = model
    try:
        await request.app.state.gateway.router.route(model)
    except RoutingError as exc:
        raise await _translate(request, exc, model) from None
    obj: dict[str, Any] = {"model": model, "created_at": rfc3339nano()}
    if chat:
        obj.update(
            {"message": {"role": "assistant", "content": ""}, "done_reason": "load", "done": True}
        )
    else:
        obj.update({"response": "", "done": True, "done_reason": "load"})
    return _json(obj)


def _details(route: Any) -> dict[str, Any]:
    kinds = sorted({t.backend_type for t in route.targets})
    return {
        "parent_model": "",
        "format": "",
        "family": route.targets[0].backend_type if route.targets else "",
        "families": kinds,
        "parameter_size": "",
        "quantization_level": "",
    }


async def _routes_or_error(request: Request) -> list[Any]:
    try:
        return await request.app.state.gateway.catalog.routes()
    except RoutingError as exc:
        raise await _translate(request, exc, "") from None


async def tags(request: Request) -> Response:
    """GET /api/tags: the registry's enabled models, in Ollama's "List Local Models" shape."""
    gateway = request.app.state.gateway
    modified = rfc3339nano(int(gateway.catalog.started_at * 1e9))
    models = [
        {
            "name": route.model,
            "model": route.model,
            "modified_at": modified,
            "size": 0,
            "digest": route_digest(route),
            "details": _details(route),
        }
        for route in await _routes_or_error(request)
    ]
    return _json({"models": models})


async def ps(request: Request) -> Response:
    """GET /api/ps: models this gateway served within Ollama's keep-alive window."""
    gateway = request.app.state.gateway
    by_name = {route.model: route for route in await _routes_or_error(request)}
    models = []
    for name, expires in gateway.catalog.recently_served():
        route = by_name.get(name)
        if route is None:
            continue
        models.append(
            {
                "name": name,
                "model": name,
                "size": 0,
                "digest": route_digest(route),
                "details": _details(route),
                "expires_at": rfc3339nano(int(expires * 1e9)),
                "size_vram": 0,
            }
        )
    return _json({"models": models})


async def show(request: Request) -> Response:
    """POST /api/show: describe a model: its chain of targets in ``model_info``."""
    body = await read_object(request.scope, request.receive)
    # `name` is the field's older spelling.
    name = model_field(body, "model" if body.get("model") else "name")
    gateway = request.app.state.gateway
    try:
        route = await gateway.router.route(name)
    except RoutingError as exc:
        raise await _translate(request, exc, name) from None
    principal = getattr(request.state, "principal", None)
    # Endpoint URLs and upstream names are the operators' to read (docs/gateway.md).
    operator = principal is not None and principal.operator
    model_info: dict[str, Any] = {"general.architecture": "athena-route"}
    lines = []
    for i, target in enumerate(route.targets):
        model_info[f"athena.targets.{i}.backend_type"] = target.backend_type
        model_info[f"athena.targets.{i}.model_name"] = target.model_name or name
        if operator:
            model_info[f"athena.targets.{i}.endpoint_url"] = target.endpoint_url
            model_info[f"athena.targets.{i}.upstream_model"] = target.upstream_model
            lines.append(f"# {target.backend_type} {target.endpoint_url} {target.upstream_model}")
        else:
            lines.append(f"# {target.backend_type} {target.model_name or name}")
    chain = "\n".join(lines)
    return _json(
        {
            "modelfile": f"# routed by the Athena gateway; targets in order:\n{chain}\n",
            "parameters": "",
            "template": "",
            "details": _details(route),
            "model_info": model_info,
            "capabilities": ["completion"],
            "modified_at": rfc3339nano(int(gateway.catalog.started_at * 1e9)),
        }
    )


async def version(request: Request) -> Response:
    """GET /api/version."""
    return _json({"version": OLLAMA_API_VERSION})


async def root(request: Request) -> Response:
    """GET /: what Ollama answers, so probes written for Ollama work here."""
    return Response(b"Ollama is running", media_type="text/plain; charset=utf-8")


def routes() -> list[Route]:
    return [
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/api/version", version, methods=["GET"]),
        Route("/api/tags", tags, methods=["GET"]),
        Route("/api/ps", ps, methods=["GET"]),
        Route("/api/show", show, methods=["POST"]),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/chat", chat, methods=["POST"]),
    ]
