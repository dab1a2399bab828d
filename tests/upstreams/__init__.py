"""Test servers speaking the real wire formats of Ollama, OpenAI and Athena's admin API.

Used by tests/routing, the gateway and Celery tests, and bench scripts:

    from tests.upstreams import Behavior, ollama_app, serve_in_thread

    behavior = Behavior()
    with serve_in_thread(ollama_app(behavior)) as server:
        ...  # server.url; mutate `behavior` to make it misbehave
"""

from tests.upstreams.admin import AdminStandIn, admin_app
from tests.upstreams.behavior import Behavior
from tests.upstreams.ollama import ollama_app
from tests.upstreams.openai import openai_app
from tests.upstreams.runner import RunningServer, serve_in_subprocess, serve_in_thread

__all__ = [
    "AdminStandIn",
    "Behavior",
    "RunningServer",
    "admin_app",
    "ollama_app",
    "openai_app",
    "serve_in_subprocess",
    "serve_in_thread",
]
