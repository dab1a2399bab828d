"""Endpoint URLs and upstreams' own error text are for operators only.

Any key holder used to read internal endpoint URLs and an upstream's 4xx/5xx text in errors
and in /api/show. Operators (users who may change registry entries, superusers) still do;
service keys and other users read each target by model name and backend type.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from backends.services import service_key_create

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def key_of() -> Callable[[object], dict[str, str]]:
    def key(owner: object) -> dict[str, str]:
        return {"X-API-Key": service_key_create(name="k", owner=owner)[1]}  # type: ignore[arg-type]

    return key


@pytest.fixture
def failing(entry, dead_url, openai_url, openai_behavior) -> tuple[str, str]:
    openai_behavior.status = 500
    openai_behavior.error_message = "GPU on fire at /srv/models/secret"
    entry("backup", "mlx", openai_url, upstream_model="secret-upstream")
    entry("phi", "ollama", dead_url, fallbacks=["backup"])
    return dead_url, openai_url


def _requests(gateway: str, headers: dict[str, str]) -> list[httpx.Response]:
    with httpx.Client(base_url=gateway, headers=headers, timeout=15) as http:
        return [
            http.post("/api/generate", json={"model": "phi", "prompt": "hi"}),
            http.post("/v1/chat/completions", json={"model": "phi", **CHAT}),
            http.post("/v1/chat/completions", json={"model": "phi", "stream": True, **CHAT}),
            http.post("/api/show", json={"model": "phi"}),
        ]


# (A user with no group may not use models at all once `use_llmbackend` is checked.)
@pytest.mark.parametrize("who", ["service_key", "viewer"])
def test_others_read_targets_by_model_and_backend_type_only(gateway, failing, who, request, key_of):  # fmt: skip
    if who == "service_key":
        headers = {"X-API-Key": request.getfixturevalue("service_key")}
    else:
        headers = key_of(request.getfixturevalue(who))
    dead_url, openai_url = failing
    *errors, show = _requests(gateway, headers)
    for response in (*errors, show):
        for secret in (dead_url, openai_url, "127.0.0.1", "GPU on fire", "secret-upstream"):
            assert secret not in response.text, (secret, response.text)
    for response in errors:
        assert response.status_code == 502
        assert "phi (ollama): unreachable" in response.text
        assert "backup (mlx): HTTP 500" in response.text
    info = show.json()["model_info"]
    assert info["athena.targets.0.backend_type"] == "ollama"
    assert info["athena.targets.1.model_name"] == "backup"


@pytest.mark.parametrize("who", ["operator", "superuser"])
def test_operators_read_endpoints_and_upstream_errors(gateway, failing, who, request, key_of):
    dead_url, openai_url = failing
    *errors, show = _requests(gateway, key_of(request.getfixturevalue(who)))
    for response in errors:
        assert response.status_code == 502
        assert dead_url in response.text and openai_url in response.text
        assert "GPU on fire" in response.text
    info = show.json()["model_info"]
    assert info["athena.targets.1.endpoint_url"] == openai_url
    assert info["athena.targets.1.upstream_model"] == "secret-upstream"


def test_an_upstream_4xx_text_is_an_operators_to_read(gateway, entry, openai_url, openai_behavior, operator, key_of, service_key):  # fmt: skip
    openai_behavior.status = 400
    openai_behavior.error_message = "prompt too long for /srv/models/secret"
    entry("phi", "mlx", openai_url)
    body = {"model": "phi", **CHAT}
    plain = httpx.post(f"{gateway}/v1/chat/completions", json=body, headers={"X-API-Key": service_key})  # fmt: skip
    assert plain.status_code == 400
    assert "/srv/models" not in plain.text and openai_url not in plain.text
    assert "phi (mlx): HTTP 400" in plain.text
    detailed = httpx.post(f"{gateway}/v1/chat/completions", json=body, headers=key_of(operator))
    assert "prompt too long for /srv/models/secret" in detailed.text


@pytest.mark.parametrize("stream", [False, True])
def test_the_backend_header_names_the_endpoint_to_operators_only(gateway, entry, dead_url, openai_url, service_key, operator, key_of, stream):  # fmt: skip
    entry("backup", "mlx", openai_url)
    entry("phi", "ollama", dead_url, fallbacks=["backup"])
    labels = []
    for headers in ({"X-API-Key": service_key}, key_of(operator)):
        with httpx.Client(base_url=gateway, headers=headers, timeout=15) as http:
            served = http.post("/api/chat", json={"model": "phi", "stream": stream, **CHAT})
            assert served.status_code == 200
        labels.append(served.headers["x-athena-backend"])
    assert labels == ["mlx", f"mlx {openai_url}"]
