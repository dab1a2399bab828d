"""Real servers on 127.0.0.1: the test upstreams, the admin (live_server) and the gateway.

The gateway runs with uvicorn in a thread, lifespan on, so it makes and closes its own
router as in production. Registry entries are made with backends.services, as an operator's
tools do; the gateway finds them through the admin's route look-up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn

from athena_admin.gateway import GatewayConfig, create_app
from tests.upstreams import Behavior
from tests.upstreams.fixtures import free_port  # noqa: F401 - re-exported for the tests
from tests.upstreams.runner import RunningServer, bind_free_socket


@pytest.fixture(autouse=True)
def _reset(ollama_behavior: Behavior, openai_behavior: Behavior) -> None:
    ollama_behavior.reset()
    openai_behavior.reset()


def serve_gateway(config: GatewayConfig, router: Any = None) -> RunningServer:
    """Run the gateway app in a thread, lifespan on; return once it accepts connections."""
    sock = bind_free_socket()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config, router=router),
            lifespan="on",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.005)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    return RunningServer(f"http://127.0.0.1:{sock.getsockname()[1]}", stop)


@pytest.fixture
def make_gateway(live_server: Any, service_key: str) -> Iterator[Callable[..., str]]:
    """Start gateways against the live admin (stopped after the test); return their URL."""
    servers: list[RunningServer] = []

    def make(**overrides: Any) -> str:
        router_options = {"connect_timeout": 1.0, "metrics_interval": 0.2}
        router_options.update(overrides.pop("router_options", {}))
        values: dict[str, Any] = {
            "admin_url": live_server.url,
            "service_key": service_key,
            "router_options": router_options,
            **overrides,
        }
        server = serve_gateway(GatewayConfig(**values))
        servers.append(server)
        return server.url

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., str]) -> str:
    """A gateway with the default settings: keys required, loopback not open."""
    return make_gateway()


@pytest.fixture
def entry() -> Callable[..., Any]:
    """Create a registry entry (enabled) through the service layer."""
    from backends.services import backend_create

    def make(model_name: str, backend_type: str, endpoint_url: str, **fields: Any) -> Any:
        fallbacks = fields.pop("fallbacks", None)
        values = {
            "model_name": model_name,
            "backend_type": backend_type,
            "endpoint_url": endpoint_url,
            "upstream_model": fields.pop("upstream_model", f"{model_name}-upstream"),
            "timeout_seconds": fields.pop("timeout_seconds", 5),
            **fields,
        }
        return backend_create(fields=values, fallbacks=fallbacks)

    return make


@pytest.fixture
def auth(service_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {service_key}"}


@pytest.fixture
def operator_auth(operator: Any) -> dict[str, str]:
    """A personal key of a registry operator: may read endpoint URLs in answers."""
    from backends.services import service_key_create

    return {"Authorization": f"Bearer {service_key_create(name='olivia', owner=operator)[1]}"}


# The scripted upstream (any status, headers and bytes) for the property-based tests.
from tests.gateway.scripted_upstream import _reset_script, script, scripted_url  # noqa: E402,F401
