"""What every gateway answer must be, whatever it answers: something its client can parse."""

from __future__ import annotations

import json

import httpx


def assert_answer_in_protocol(response: httpx.Response, path: str) -> None:
    """Assert a whole answer is in the client's protocol: never a plain-text error.

    Errors: JSON, Ollama ``{"error": str}`` or OpenAI ``{"error": {"message": str, ...}}``.
    Streams: NDJSON ending with ``done: true`` or an error line; SSE ending with
    ``data: [DONE]`` or an error event. Other answers: JSON.
    """
    openai = path.startswith("/v1/")
    status = response.status_code
    media = response.headers.get("content-type", "")
    context = f"{status} {media!r} {response.text[:300]!r}"
    if status >= 400:
        assert media.startswith("application/json"), context
        _assert_error(response.json(), openai, context)
        return
    assert status == 200, context
    if media.startswith("application/x-ndjson"):
        lines = [json.loads(line) for line in response.text.splitlines() if line]
        assert lines, context
        for line in lines[:-1]:
            assert line.get("done") is False, context
        last = lines[-1]
        if "error" in last:
            _assert_error(last, False, context)
        else:
            assert last["done"] is True, context
    elif media.startswith("text/event-stream"):
        assert response.text.endswith("\n\n"), context
        frames = [e for e in response.text.split("\n\n") if e]
        assert frames and all(f.startswith("data: ") for f in frames), context
        events = [f[len("data: ") :] for f in frames]
        for event in events[:-1]:
            assert isinstance(json.loads(event), dict), context
        if events[-1] != "[DONE]":
            _assert_error(json.loads(events[-1]), True, context)
    else:
        assert media.startswith("application/json"), context
        assert isinstance(response.json(), dict), context


def _assert_error(body: object, openai: bool, context: str) -> None:
    assert isinstance(body, dict), context
    error = body["error"]
    if openai:
        assert isinstance(error, dict) and isinstance(error["message"], str), context
        assert isinstance(error["type"], str), context
    else:
        assert isinstance(error, str) and error, context
