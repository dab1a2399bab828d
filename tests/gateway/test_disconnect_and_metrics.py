"""A client that hangs up cancels the upstream call; every call's sample reaches the admin."""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def _wait_for_sample(**filters):
    from backends.models import RequestSample

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sample = RequestSample.objects.filter(**filters).first()
        if sample is not None:
            return sample
        time.sleep(0.1)
    raise AssertionError(f"no sample {filters}: {list(RequestSample.objects.values())}")


def test_a_streaming_client_that_disconnects_cancels_the_upstream(gateway, auth, entry, openai_url, openai_behavior):  # fmt: skip
    entry("phi", "mlx", openai_url)
    openai_behavior.words = tuple(f" w{i}" for i in range(50))
    openai_behavior.chunk_delay = 0.2
    body = {"model": "phi", "prompt": "hi"}
    with (
        httpx.Client(base_url=gateway, headers=auth, timeout=10) as client,
        client.stream("POST", "/api/generate", json=body) as response,
    ):
        next(response.iter_lines())
    sample = _wait_for_sample(model="phi", error_kind="cancelled")
    assert sample.stream and not sample.ok


def test_a_waiting_client_that_disconnects_cancels_the_upstream(gateway, auth, entry, openai_url, openai_behavior):  # fmt: skip
    entry("phi", "mlx", openai_url)
    openai_behavior.delay = 3.0
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{gateway}/v1/completions",
            json={"model": "phi", "prompt": "hi"},
            headers=auth,
            timeout=0.5,
        )
    sample = _wait_for_sample(model="phi", error_kind="cancelled")
    assert not sample.stream and sample.latency_ms < 3000


def test_each_call_is_sampled_to_the_admin(gateway, auth, entry, ollama_url, dead_url):
    from backends.models import LLMBackend

    entry("backup", "ollama", ollama_url)
    primary = entry("phi", "mlx", dead_url, fallbacks=["backup"])
    response = httpx.post(
        f"{gateway}/api/generate",
        json={"model": "phi", "prompt": "hi", "stream": False},
        headers=auth,
    )
    assert response.status_code == 200
    failed = _wait_for_sample(model="phi", ok=False)
    served = _wait_for_sample(model="phi", ok=True)
    assert (failed.error_kind, failed.entry_id) == ("connect", primary.pk)
    assert served.fallback and served.entry_id == LLMBackend.objects.get(model_name="backup").pk
    assert served.completion_tokens == 4
