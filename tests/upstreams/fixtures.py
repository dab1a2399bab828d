"""Pytest fixtures for the test upstreams, shared by the routing, gateway and ops suites.

A conftest imports the ones it needs by name; the servers start once per session and their
knobs (Behavior) are reset by each suite's own autouse fixture.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.upstreams import Behavior, ollama_app, openai_app, serve_in_thread


def free_port() -> int:
    """A port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def ollama_behavior() -> Behavior:
    return Behavior()


@pytest.fixture(scope="session")
def openai_behavior() -> Behavior:
    return Behavior()


@pytest.fixture(scope="session")
def ollama_url(ollama_behavior: Behavior) -> Iterator[str]:
    with serve_in_thread(ollama_app(ollama_behavior)) as server:
        yield server.url


@pytest.fixture(scope="session")
def openai_url(openai_behavior: Behavior) -> Iterator[str]:
    with serve_in_thread(openai_app(openai_behavior)) as server:
        yield server.url


@pytest.fixture
def dead_url() -> str:
    """A URL nothing listens on: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"
