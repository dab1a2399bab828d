"""A huge prompt is refused quickly, and never stops the server answering others.

A 14 MiB prompt used to hold the event loop while it was tokenised (12-40 s) before its
400: `/health` and every other request waited. Now a prompt longer than the context could
hold is refused before tokenising, and tokenising happens off the loop.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlx_server.prompts import longest_token_chars, refuse_what_cannot_fit

from .conftest import MODEL_NAME, ServerProcess, TinyTokenizer

HUGE = "hello world " * (14 * 1024 * 1024 // 12)  # 14 MiB

REQUESTS: dict[str, tuple[dict[str, Any], str]] = {
    "/v1/completions": ({"prompt": HUGE, "max_tokens": 2}, "prompt"),
    "/v1/chat/completions": ({"messages": [{"role": "user", "content": HUGE}]}, "messages"),
    "/api/generate": ({"prompt": HUGE, "stream": False}, "prompt"),
    "/api/chat": ({"messages": [{"role": "user", "content": HUGE}], "stream": False}, "messages"),
}


@pytest.mark.parametrize("path", sorted(REQUESTS))
def test_a_huge_prompt_is_a_400_naming_the_field_quickly(client: httpx.Client, path: str) -> None:
    body, field = REQUESTS[path]
    started = time.monotonic()
    response = client.post(path, json={"model": MODEL_NAME, **body})
    elapsed = time.monotonic() - started
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    if path.startswith("/v1/"):
        assert error["param"] == field
        assert error["code"] == "context_length_exceeded"
        message = error["message"]
    else:
        message = error
    assert message.startswith(f"'{field}' is 14680056 characters")
    assert "context of" in message
    # Generous: tokenising it all took 40 s on the test machine; refusing takes the upload.
    assert elapsed < 10


def test_health_answers_while_a_huge_prompt_is_handled(server: ServerProcess) -> None:
    answers: dict[str, Any] = {}

    def send_huge() -> None:
        with server.client() as http:
            answers["huge"] = http.post(
                "/api/generate", json={"model": MODEL_NAME, "prompt": HUGE, "stream": False}
            )

    sender = threading.Thread(target=send_huge)
    waits = []
    with server.client() as http:
        sender.start()
        while sender.is_alive():
            started = time.monotonic()
            assert http.get("/health").status_code == 200
            waits.append(time.monotonic() - started)
            time.sleep(0.02)
    sender.join()
    assert answers["huge"].status_code == 400
    assert waits and max(waits) < 1.0, waits


def test_a_prompt_under_the_character_bound_but_over_the_context_is_still_refused(
    client: httpx.Client, tiny_tokenizer: TinyTokenizer
) -> None:
    # Tokenised (off the loop), counted, and refused by its real token count.
    prompt = "hello " * tiny_tokenizer.context_length
    response = client.post("/v1/completions", json={"model": MODEL_NAME, "prompt": prompt})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("the prompt is ")
    assert response.json()["error"]["param"] == "prompt"


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_model_path: Any) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_path))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(min_size=1, max_size=400))
def test_the_character_bound_never_refuses_a_prompt_that_fits(hf_tokenizer: Any, text: str) -> None:
    # What the early refusal rests on: no text is longer than its tokens could spell.
    longest = longest_token_chars(hf_tokenizer)
    tokens = len(hf_tokenizer.encode(text, add_special_tokens=False))
    refuse_what_cannot_fit(len(text), context=max(tokens, 1), longest=longest, param="prompt")
