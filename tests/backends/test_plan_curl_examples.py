"""The plan's curl commands, sent verbatim (plus an auth header) to a live server."""

import json
import subprocess
from typing import Any

import pytest

from backends.models import LLMBackend
from backends.services import service_key_create

# Copied from the plan's "Open Source Deployment Guide"; only the auth header is added.
QUICK_START = """curl -X POST $ADMIN_URL/api/llm-backends \\
  -H "Authorization: Bearer $ADMIN_TOKEN" \\
  -d '{
    "model_name": "phi3:mini",
    "backend_type": "ollama",
    "endpoint_url": "http://localhost:11434",
    "enabled": true
  }'"""
PER_MODEL = [
    """curl -X POST $ADMIN_URL/api/llm-backends -H "Authorization: Bearer $ADMIN_TOKEN" -d '{
  "model_name": "phi3:mini-classify",
  "backend_type": "ollama",
  "endpoint_url": "http://localhost:11434"
}'""",
    """curl -X POST $ADMIN_URL/api/llm-backends -H "Authorization: Bearer $ADMIN_TOKEN" -d '{
  "model_name": "phi3:mini-synthesis",
  "backend_type": "mlx",
  "endpoint_url": "http://localhost:11435"
}'""",
    """curl -X POST $ADMIN_URL/api/llm-backends -H "Authorization: Bearer $ADMIN_TOKEN" -d '{
  "model_name": "llama3.1:8b",
  "backend_type": "auto",
  "endpoint_url": "http://localhost:11435"
}'""",
]


def curl(command: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        ["bash", "-c", command + " -s -w '\\n%{http_code}'"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, status = done.stdout.rsplit("\n", 1)
    return {"status": int(status), "body": json.loads(body) if body else None}


@pytest.fixture
def env(live_server: Any, operator: Any) -> dict[str, str]:
    token = service_key_create(name="deploy", owner=operator)[1]
    return {"PATH": "/usr/bin:/bin", "ADMIN_URL": live_server.url, "ADMIN_TOKEN": token}


@pytest.mark.django_db(transaction=True)
def test_the_plans_curl_examples_work_as_written(env: dict[str, str]) -> None:
    for command in [QUICK_START, *PER_MODEL]:
        result = curl(command, env)
        assert result["status"] == 201, result
    assert sorted(LLMBackend.objects.values_list("model_name", "backend_type")) == [
        ("llama3.1:8b", "auto"),
        ("phi3:mini", "ollama"),
        ("phi3:mini-classify", "ollama"),
        ("phi3:mini-synthesis", "mlx"),
    ]
    again = curl(QUICK_START, env)
    assert again == {
        "status": 400,
        "body": {
            "detail": "Backend for model 'phi3:mini' already exists",
            "model_name": ["Backend for model 'phi3:mini' already exists"],
        },
    }
    lookup = curl(
        'curl "$ADMIN_URL/api/llm-backends/model/llama3.1:8b" '
        '-H "Authorization: Bearer $ADMIN_TOKEN"',
        env,
    )
    assert lookup["body"]["backend_type"] == "auto"


@pytest.mark.django_db(transaction=True)
def test_without_the_auth_header_the_examples_are_refused(env: dict[str, str]) -> None:
    command = QUICK_START.replace('-H "Authorization: Bearer $ADMIN_TOKEN" \\\n', "")
    assert curl(command, env)["status"] == 401
    assert not LLMBackend.objects.exists()
