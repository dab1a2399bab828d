"""A test upstream that answers every request with whatever bytes a test scripted.

Where ollama.py and openai.py speak their protocols correctly (with fault knobs), this one
speaks none: any method and path gets ``Script.status`` with ``Script.chunks`` as the body,
sent as they are (a streamed body, chunked on the wire), then, if ``Script.forever`` is set,
that piece again every ``Script.pause`` seconds until the client goes away. It is how tests
make an upstream answer valid JSON of the wrong shape, arbitrary bytes, or keep-alives and
no content, over a real socket.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Script", "scripted_app"]


@dataclass
class Script:
    """The next answers. Mutate it from a test; ``reset()`` between tests."""

    status: int = 200
    content_type: str = "application/json"
    chunks: list[bytes] = field(default_factory=list)
    pause: float = 0.0  # seconds before each chunk after the first, and between `forever`s
    forever: bytes | None = None  # after the chunks, sent again and again until disconnect
    requests: list[bytes] = field(default_factory=list)  # bodies received, in order

    def reset(self) -> None:
        self.status, self.content_type = 200, "application/json"
        self.chunks, self.pause, self.forever = [], 0.0, None
        self.requests.clear()


def scripted_app(script: Script) -> Any:
    """A raw ASGI app (no framework: nothing may tidy the bytes up) playing ``script``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        script.requests.append(body)
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": script.status,
                    "headers": [(b"content-type", script.content_type.encode("latin-1"))],
                }
            )
            for i, chunk in enumerate(script.chunks):
                if i and script.pause:
                    await asyncio.sleep(script.pause)
                if gone.is_set():
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            while script.forever is not None and not gone.is_set():
                await asyncio.sleep(script.pause or 0.1)
                await send(
                    {"type": "http.response.body", "body": script.forever, "more_body": True}
                )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()

    return app
