"""The OpenAI protocol: POST /v1/completions and /v1/chat/completions, SSE streaming.

Wire format: https://platform.openai.com/docs/api-reference (completions, chat, streaming).
A stream is ``data: <json>`` events separated by blank lines and ends with ``data: [DONE]``;
``stream_options.include_usage`` asks for a last chunk with ``choices: []`` and ``usage``.
Spoken by mlx_server, mlx_lm.server, llama.cpp, vLLM and LM Studio alike.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from routing._backends._base import (
    Backend,
    ProbeResult,
    drain,
    failed_probe,
    http_errors,
    raise_for_status,
    read_answer,
    status_probe_failure,
)
from routing._exceptions import UpstreamError, UpstreamProtocolError
from routing._types import Finish, GenerationRequest, StreamEvent, Target, TextDelta

__all__ = ["OpenAIBackend"]

_INCLUDE_USAGE = {"include_usage": True}


class OpenAIBackend(Backend):
    kind = "openai"
    protocol = "openai"
    health_path = "/v1/models"

    def render(self, target: Target, request: GenerationRequest) -> dict[str, Any]:
        """Build the JSON body for /v1/completions or /v1/chat/completions."""
        body: dict[str, Any] = {"model": target.upstream_model}
        if request.messages is not None:
            messages = [dict(m) for m in request.messages]
            if request.system is not None:
                messages.insert(0, {"role": "system", "content": request.system})
            body["messages"] = messages
        else:
            # /v1/completions has no system field: the system text leads the prompt.
            prompt = request.prompt or ""
            body["prompt"] = prompt if request.system is None else f"{request.system}\n\n{prompt}"
        body["max_tokens"] = request.max_tokens_for(target)
        body["temperature"] = request.temperature_for(target)
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop is not None:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        body["stream"] = request.stream
        if request.stream:
            body["stream_options"] = _INCLUDE_USAGE
        return body

    async def events(
        self, target: Target, request: GenerationRequest
    ) -> AsyncGenerator[StreamEvent, None]:
        chat = request.messages is not None
        url = self.url_for(target, "/v1/chat/completions" if chat else "/v1/completions")
        body = self.render(target, request)
        timeout = self.timeout_for(target)
        if not request.stream:
            with http_errors(target):
                async with self.post(url, body, timeout) as response:
                    await raise_for_status(response, target)
                    raw = await read_answer(response, target, self.max_answer_bytes)
            obj = self._object(self.parse_json(raw, target), target)
            choice = _first_choice(obj, target)
            text = _choice_text(choice, chat)
            if text:
                yield TextDelta(text)
            yield _finish(obj, choice.get("finish_reason"))
            return
        finish_reason: str | None = None
        usage_chunk: Mapping[str, Any] = {}
        with http_errors(target):
            async with self.post(url, body, timeout) as response:
                await raise_for_status(response, target)
                lines = self.lines(response, target)
                async for line in lines:
                    # SSE: only `data:` fields matter here; blank lines and `:` comments are framing.
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        await drain(lines)
                        yield _finish(usage_chunk, finish_reason)
                        return
                    obj = self._object(self.parse_json(data, target), target)
                    if obj.get("usage"):
                        usage_chunk = obj
                    choices = obj.get("choices")
                    if not choices:
                        continue
                    choice = choices[0]
                    text = _choice_text(choice, chat, delta=True)
                    if text:
                        yield TextDelta(text)
                    if choice.get("finish_reason"):
                        finish_reason = choice["finish_reason"]
        raise UpstreamProtocolError("stream ended without data: [DONE]", target=target)

    def _object(self, obj: Any, target: Target) -> Mapping[str, Any]:
        if not isinstance(obj, dict):
            raise UpstreamProtocolError(f"expected a JSON object, got {obj!r:.80}", target=target)
        if obj.get("error"):
            err = obj["error"]
            msg = err.get("message", err) if isinstance(err, dict) else err
            raise UpstreamProtocolError(f"backend error: {msg}", target=target)
        return obj

    async def probe(self, endpoint_url: str, *, timeout: float = 5.0) -> ProbeResult:
        """GET the health path (``/v1/models`` lists the served models)."""
        started = time.perf_counter()
        try:
            with http_errors(None):
                status, body = await self.get_json(
                    endpoint_url.rstrip("/") + self.health_path, timeout
                )
            ms = (time.perf_counter() - started) * 1000
            if status != 200:
                return status_probe_failure(started, status)
            models, loaded = self.probe_models(body)
            return ProbeResult(True, ms, models=models, loaded=loaded, status_code=200)
        except (UpstreamError, ValueError, AttributeError) as exc:
            return failed_probe(started, exc)

    def probe_models(self, body: Any) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
        """Read (served models, loaded models or None) from the health answer's JSON."""
        data = body.get("data") or []
        return tuple(m.get("id", "") for m in data), None


def _first_choice(obj: Mapping[str, Any], target: Target) -> Mapping[str, Any]:
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamProtocolError("answer has no choices", target=target)
    return choices[0]


def _choice_text(choice: Mapping[str, Any], chat: bool, *, delta: bool = False) -> str:
    if not chat:
        return choice.get("text") or ""
    message = choice.get("delta" if delta else "message")
    return (message.get("content") or "") if isinstance(message, dict) else ""


def _finish(obj: Mapping[str, Any], finish_reason: str | None) -> Finish:
    usage = obj.get("usage") or {}
    return Finish(
        finish_reason=finish_reason,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        upstream_model=obj.get("model"),
    )
