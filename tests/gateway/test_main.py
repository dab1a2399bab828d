"""`python -m athena_admin.gateway` starts from Django's settings and the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[2]


def test_the_command_serves_the_registry_from_its_settings(live_server, service_key, entry, ollama_url):  # fmt: skip
    entry("llama", "ollama", ollama_url)
    port = free_port()
    env = {
        **os.environ,
        "ADMIN_API_URL": live_server.url,
        "ATHENA_SERVICE_KEY": service_key,
        "ATHENA_GATEWAY_OPEN_ON_LOOPBACK": "true",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "athena_admin.gateway", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
            try:
                if httpx.get(url + "/").text == "Ollama is running":
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.1)
        assert [m["name"] for m in httpx.get(url + "/api/tags").json()["models"]] == ["llama"]
        answer = httpx.post(url + "/api/generate", json={"model": "llama", "prompt": "hi", "stream": False})  # fmt: skip
        assert answer.json()["response"] == "Hello, world!"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_start_up_objects_are_frozen_out_of_garbage_collection():
    import gc

    from athena_admin.gateway.__main__ import tune_gc

    try:
        tune_gc()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
