"""python -m tests.upstreams {ollama,openai,admin} [--port N] [--words N] [--chunk-delay-ms MS]
[--http h11|httptools]"""

from __future__ import annotations

import argparse

import uvicorn

from tests.upstreams.admin import admin_app
from tests.upstreams.behavior import Behavior
from tests.upstreams.ollama import ollama_app
from tests.upstreams.openai import openai_app
from tests.upstreams.runner import bind_free_socket


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.upstreams")
    parser.add_argument("kind", choices=["ollama", "openai", "admin"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--words", type=int, default=0, help="answer length in chunks (default 4)")
    parser.add_argument(
        "--chunk-delay-ms", type=float, default=0.0, help="pause between stream chunks"
    )
    parser.add_argument("--http", default="httptools")
    args = parser.parse_args()
    behavior = Behavior()
    if args.words:
        behavior.words = tuple(f" w{i}" for i in range(args.words))
    behavior.chunk_delay = args.chunk_delay_ms / 1000
    behavior.requests = _NoRecord()
    app = {"ollama": ollama_app, "openai": openai_app}.get(args.kind)
    asgi = app(behavior) if app else admin_app()[0]
    if args.port:
        import socket

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", args.port))
        sock.listen(2048)
    else:
        sock = bind_free_socket()
    server = uvicorn.Server(
        uvicorn.Config(asgi, http=args.http, log_level="critical", access_log=False, lifespan="off")
    )
    print(f"READY http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


class _NoRecord(list):  # type: ignore[type-arg]
    """A long-running server keeps no request log (it would grow without bound)."""

    def append(self, item: object) -> None:
        pass


if __name__ == "__main__":
    main()
