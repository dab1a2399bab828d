"""Ollama's native protocol: POST /api/generate and /api/chat, NDJSON streaming.

Wire format: https://github.com/ollama/ollama/blob/main/docs/api.md. Sampling parameters go
in ``options`` (``temperature``, ``num_predict``, ``top_p``, ``stop``, ``seed``); the last line
of a stream has ``"done": true``, ``done_reason`` and the stats (durations in nanoseconds).
An error after the 200 header arrives as a line ``{"error": "..."}``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from routing._answers import check_finish
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

__all__ = ["OllamaBackend"]


class OllamaBackend(Backend):
    kind = "ollama"
    protocol = "ollama"

    def render(self, target: Target, request: GenerationRequest) -> dict[str, Any]:
        """Build the JSON body for /api/generate or /api/chat."""
        options: dict[str, Any] = {
            "temperature": request.temperature_for(target),
            "num_predict": request.max_tokens_for(target),
        }
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.stop is not None:
            options["stop"] = list(request.stop)
        if request.seed is not None:
            options["seed"] = request.seed
        body: dict[str, Any] = {"model": target.upstream_model}
        if request.messages is not None:
            messages = [dict(m) for m in request.messages]
            if request.system is not None:
                messages.insert(0, {"role": "system", "content": request.system})
            body["messages"] = messages
        else:
            body["prompt"] = request.prompt
            if request.system is not None:
                body["system"] = request.system
        body["stream"] = request.stream
        body["options"] = options
        return body

    async def events(
        self, target: Target, request: GenerationRequest
    ) -> AsyncGenerator[StreamEvent, None]:
        path = "/api/chat" if request.messages is not None else "/api/generate"
        url = self.url_for(target, path)
        body = self.render(target, request)
        timeout = self.timeout_for(target)
        if not request.stream:
            with http_errors(target):
                async with self.post(url, body, timeout) as response:
                    await raise_for_status(response, target)
                    raw = await read_answer(response, target, self.max_answer_bytes)
            obj = self._chunk(self.parse_json(raw, target), target)
            text = _text_of(obj)
            if text:
                yield TextDelta(text)
            yield _finish(obj)
            return
        with http_errors(target):
            async with self.post(url, body, timeout) as response:
                await raise_for_status(response, target)
                lines = self.lines(response, target)
                async for line in lines:
                    if not line:
                        continue
                    obj = self._chunk(self.parse_json(line, target), target)
                    text = _text_of(obj)
                    # The final chunk of /api/chat may still carry content: text goes first,
                    # but its stats are checked before, so a malformed final line that also
                    # carries the answer's first text still falls back (nothing sent yet).
                    finish = check_finish(_finish(obj), target) if obj.get("done") else None
                    if text:
                        yield TextDelta(text)
                    if finish is not None:
                        await drain(lines)
                        yield finish
                        return
        raise UpstreamProtocolError("stream ended without a final done chunk", target=target)

    def _chunk(self, obj: Any, target: Target) -> Mapping[str, Any]:
        if not isinstance(obj, dict):
            raise UpstreamProtocolError(f"expected a JSON object, got {obj!r:.80}", target=target)
        if "error" in obj:
            raise UpstreamProtocolError(f"backend error: {obj['error']}", target=target)
        return obj

    async def probe(self, endpoint_url: str, *, timeout: float = 5.0) -> ProbeResult:
        """GET /api/version, /api/tags (the local models), /api/ps (those in memory).

        One after another on the client's pooled connection; none of them loads a model.
        A failing /api/version or /api/tags fails the probe; /api/ps only informs. The
        latency is /api/tags' round trip, the same figure as before /api/version was asked.
        """
        base = endpoint_url.rstrip("/")
        version: Any = None
        started = time.perf_counter()
        try:
            with http_errors(None):
                status, body = await self.get_json(base + "/api/version", timeout)
                if status == 200:
                    version = body.get("version")
                    tags_started = time.perf_counter()
                    status, body = await self.get_json(base + "/api/tags", timeout)
            if status != 200:
                return status_probe_failure(started, status)
            ms = (time.perf_counter() - tags_started) * 1000
            models = tuple(m.get("name", "") for m in body.get("models", []))
            return ProbeResult(
                True,
                ms,
                models=models,
                loaded=await self._loaded(base, timeout),
                status_code=200,
                version=version if isinstance(version, str) else None,
            )
        except (UpstreamError, ValueError, AttributeError) as exc:
            return failed_probe(started, exc)

    async def _loaded(self, base: str, timeout: float) -> tuple[str, ...] | None:
        """GET /api/ps lists the models in memory (never loads one); None if it cannot say."""
        try:
            with http_errors(None):
                status, body = await self.get_json(base + "/api/ps", timeout)
            if status != 200:
                return None
            return tuple(m.get("name", "") for m in body.get("models", []))
        except (UpstreamError, ValueError, AttributeError):
            return None


def _text_of(obj: Mapping[str, Any]) -> str:
    message = obj.get("message")
    if isinstance(message, dict):
        return message.get("content") or ""
    return obj.get("response") or ""


def _finish(obj: Mapping[str, Any]) -> Finish:
    return Finish(
        finish_reason=obj.get("done_reason"),
        prompt_tokens=obj.get("prompt_eval_count"),
        completion_tokens=obj.get("eval_count"),
        total_duration_ns=obj.get("total_duration"),
        load_duration_ns=obj.get("load_duration"),
        prompt_eval_duration_ns=obj.get("prompt_eval_duration"),
        eval_duration_ns=obj.get("eval_duration"),
        upstream_model=obj.get("model"),
    )
