"""An upstream that misbehaves on purpose, for bench/soak.py's faults.

    .venv/bin/python bench/hostile_upstream.py {shapes,oversized,keepalive} --port N [--mib 200]

A raw asyncio HTTP/1.1 server (a framework would not send a bogus chunk size). It answers
the probes' GETs like a healthy server (Ollama /api/version and /api/tags, OpenAI
/v1/models, /health), and every generation (Ollama /api/generate and /api/chat, OpenAI
/v1/completions and /v1/chat/completions) in the mode's way, rotating through its variants:

- shapes: valid JSON of the wrong shape (OpenAI `choices: ["x"]`, `delta.content: 5`,
  `usage: "x"`; Ollama `response: 5`, `total_duration: "x"`, `message: "x"`), streamed when
  the request asks for a stream.
- oversized: a --mib body with a Content-Length, a chunk size of FFFFFFFFFFFF, or --mib of
  stream with no newline.
- keepalive: 200 and an SSE stream of `: keepalive` comments, one a second, never content.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
from typing import Any

MODEL = "llama3.2:latest"

_OPENAI_SHAPES: list[Any] = [
    {"id": "x", "object": "chat.completion", "choices": ["x"]},
    {"id": "x", "choices": [{"index": 0, "delta": {"content": 5}, "message": {"content": 5}}]},
    {"id": "x", "choices": [], "usage": "x"},
    ["not", "an", "object"],
]
_OLLAMA_SHAPES: list[Any] = [
    {"model": MODEL, "response": 5, "done": True},
    {"model": MODEL, "response": "hi", "done": True, "total_duration": "x"},
    {"model": MODEL, "message": "x", "done": True},
    {"model": MODEL, "done": "yes", "eval_count": -1},
]


def _head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


def _json_answer(body: Any) -> bytes:
    data = json.dumps(body).encode()
    head = _head("200 OK", {"Content-Type": "application/json", "Content-Length": str(len(data))})
    return head + data


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class Hostile:
    def __init__(self, mode: str, mib: int) -> None:
        self.mode = mode
        self.size = mib * 1024 * 1024
        self.turn = itertools.count()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one request after another on the connection
                request = await _read_request(reader)
                if request is None:
                    return
                method, path, body = request
                if method == "GET":
                    writer.write(_json_answer(_probe_answer(path)))
                    await writer.drain()
                    continue
                await self.generation(writer, path, body)
                if self.mode != "shapes":
                    return  # the answer was not a complete message: close
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def generation(self, writer: asyncio.StreamWriter, path: str, body: bytes) -> None:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = {}
        stream = (
            bool(request.get("stream", path.startswith("/api/")))
            if isinstance(request, dict)
            else False
        )
        ollama = path.startswith("/api/")
        turn = next(self.turn)
        if self.mode == "shapes":
            await _send_shape(
                writer, (_OLLAMA_SHAPES if ollama else _OPENAI_SHAPES)[turn % 4], ollama, stream
            )
        elif self.mode == "keepalive":
            writer.write(
                _head(
                    "200 OK", {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}
                )
            )
            while True:
                writer.write(_chunk(b": keepalive\n\n"))
                await writer.drain()
                await asyncio.sleep(1.0)
        else:
            await self.oversized(writer, turn % 3)

    async def oversized(self, writer: asyncio.StreamWriter, variant: int) -> None:
        block = b"a" * (1024 * 1024)
        if variant == 0:  # one huge non-streamed JSON body
            writer.write(
                _head(
                    "200 OK",
                    {"Content-Type": "application/json", "Content-Length": str(self.size + 9)},
                )
            )
            writer.write(b'{"x": "')
            for _ in range(self.size // len(block)):
                writer.write(block)
                await writer.drain()
            writer.write(b'"}')
        elif variant == 1:  # a chunk that claims 281 TB
            writer.write(
                _head(
                    "200 OK",
                    {"Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked"},
                )
            )
            writer.write(b"FFFFFFFFFFFF\r\n")
            for _ in range(self.size // len(block)):
                writer.write(block)
                await writer.drain()
        else:  # a stream with no line end, ever
            writer.write(
                _head(
                    "200 OK", {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}
                )
            )
            writer.write(_chunk(b"data: {"))
            for _ in range(self.size // len(block)):
                writer.write(_chunk(block))
                await writer.drain()
        await writer.drain()


async def _send_shape(writer: asyncio.StreamWriter, shape: Any, ollama: bool, stream: bool) -> None:
    if not stream:
        writer.write(_json_answer(shape))
        await writer.drain()
        return
    kind = "application/x-ndjson" if ollama else "text/event-stream"
    writer.write(_head("200 OK", {"Content-Type": kind, "Transfer-Encoding": "chunked"}))
    line = json.dumps(shape)
    events = [f"{line}\n"] if ollama else [f"data: {line}\n\n", "data: [DONE]\n\n"]
    for event in events:
        writer.write(_chunk(event.encode()))
    writer.write(b"0\r\n\r\n")
    await writer.drain()


def _probe_answer(path: str) -> Any:
    if path.startswith("/api/version"):
        return {"version": "0.6.3"}
    if path.startswith("/api/tags"):
        return {"models": [{"name": MODEL, "model": MODEL}]}
    if path.startswith("/api/ps"):
        return {"models": []}
    if path.startswith("/v1/models"):
        return {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "x"}]}
    return {"status": "ok"}


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path = (lines[0].split(" ") + ["", ""])[:2]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip() or 0)
    body = await reader.readexactly(length) if length else b""
    return method, path, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["shapes", "oversized", "keepalive"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mib", type=int, default=200, help="oversized: answer size in MiB")
    args = parser.parse_args()
    hostile = Hostile(args.mode, args.mib)

    async def serve() -> None:
        server = await asyncio.start_server(hostile.handle, "127.0.0.1", args.port)
        print(f"READY http://127.0.0.1:{args.port}", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
