"""A solo request reuses the KV cache of an earlier one's common prefix, with the same text.

Each test has a server of its own (so the cache holds that test's requests only); the
reference answers come from one server with the prompt cache off.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import MODEL_NAME, ServerProcess, run_command, start_server
from .lone_requests import counter

# Token-id prompts (BOS is 0, EOS 1): the common prefix of two prompts is exact.
STORY = [0, *range(40, 100)]
OTHER = [0, *range(300, 360)]


@pytest.fixture(scope="module")
def uncached_server(
    tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server with the prompt cache off: what a cold request answers."""
    log = tmp_path_factory.mktemp("uncached") / "log"
    running = start_server(["--model", str(tiny_model_path), "--prompt-cache-entries", "0"], log)
    yield running
    running.stop()


def server_with(tiny_model_path: Path, tmp_path: Path, entries: int) -> ServerProcess:
    args = ["--model", str(tiny_model_path), "--prompt-cache-entries", str(entries)]
    return start_server(args, tmp_path / "log")


def complete(server: ServerProcess, prompt: list[int], **options: Any) -> tuple[list[int], dict]:
    """Return the text and usage of a greedy (unless told) completion of token ids."""
    body = {"model": MODEL_NAME, "prompt": prompt, "max_tokens": 24, "temperature": 0, **options}
    answer = httpx.post(f"{server.base_url}/v1/completions", json=body, timeout=60).json()
    return answer["choices"][0]["text"], answer["usage"]


def chat(server: ServerProcess, messages: list[dict[str, str]], **options: Any) -> tuple[str, dict]:
    body = {"model": MODEL_NAME, "messages": messages, "max_tokens": 40, **options}
    answer = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=60).json()
    return answer["choices"][0]["message"]["content"], answer["usage"]


def cached(usage: dict) -> int:
    return int(usage["prompt_tokens_details"]["cached_tokens"])


def second_turn_is_served_from_the_cache(
    server: ServerProcess, reference: ServerProcess, **sampling: Any
) -> None:
    first = [{"role": "user", "content": "Tell me a story about a small model."}]
    answer, usage = chat(server, first, **sampling)
    assert cached(usage) == 0
    second = [
        *first,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "Go on"},
    ]
    text, usage = chat(server, second, **sampling)
    cold_text, cold_usage = chat(reference, second, **sampling)
    assert cached(usage) > 0
    assert cached(cold_usage) == 0
    assert usage["prompt_tokens"] == cold_usage["prompt_tokens"]  # cached tokens count
    assert counter(server.base_url, "mlx_prompt_cache_hits") == 1
    assert counter(server.base_url, "mlx_prompt_cache_reused_tokens") == cached(usage)
    assert text == cold_text


def test_a_second_chat_turn_reuses_the_first_turns_cache_and_answers_as_a_cold_request(
    lone_server: ServerProcess, uncached_server: ServerProcess
) -> None:
    second_turn_is_served_from_the_cache(lone_server, uncached_server, temperature=0)


def test_a_seeded_second_turn_samples_the_same_text_as_a_cold_request(
    lone_server: ServerProcess, uncached_server: ServerProcess
) -> None:
    second_turn_is_served_from_the_cache(lone_server, uncached_server, temperature=1.0, seed=7)


def test_an_extended_token_prompt_reuses_exactly_the_tokens_it_shares(
    lone_server: ServerProcess, uncached_server: ServerProcess
) -> None:
    complete(lone_server, STORY)
    diverging = [*STORY[:30], *range(200, 230)]
    text, usage = complete(lone_server, diverging)
    assert cached(usage) == 30
    assert text == complete(uncached_server, diverging)[0]


def test_a_prompt_that_diverges_at_once_reuses_nothing_and_keeps_the_entry(
    lone_server: ServerProcess,
) -> None:
    complete(lone_server, STORY)
    _, usage = complete(lone_server, [0, 40, *range(400, 440)])  # two tokens in common
    assert cached(usage) == 0
    # A short shared prefix got a copy: the story's own entry is still whole.
    complete(lone_server, [*STORY[:10], *range(200, 230)])
    _, usage = complete(lone_server, [*STORY, 7, 8])
    assert cached(usage) == len(STORY)


def test_one_entry_is_evicted_by_another_conversation(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    server = server_with(tiny_model_path, tmp_path, entries=1)
    try:
        complete(server, STORY)
        complete(server, OTHER)  # evicts the story's cache
        _, usage = complete(server, [*STORY, 5, 6])
        assert cached(usage) == 0
        _, usage = complete(server, [*OTHER, 5, 6])
        assert cached(usage) == 0
        _, usage = complete(server, [*OTHER, 5, 6, 7])
        assert cached(usage) == len(OTHER) + 2
    finally:
        server.stop()


def test_zero_entries_disable_the_prompt_cache(tiny_model_path: Path, tmp_path: Path) -> None:
    server = server_with(tiny_model_path, tmp_path, entries=0)
    try:
        complete(server, STORY)
        _, usage = complete(server, [*STORY, 5, 6])
        assert cached(usage) == 0
        assert counter(server.base_url, "mlx_prompt_cache_hits") == 0
    finally:
        server.stop()


@pytest.mark.parametrize("value", ["-1", "four"])
def test_it_refuses_a_bad_prompt_cache_size(tiny_model_path: Path, value: str) -> None:
    result = run_command("--model", str(tiny_model_path), "--prompt-cache-entries", value)
    assert result.returncode != 0
    assert "--prompt-cache-entries" in result.stderr


def test_it_refuses_a_bad_prompt_cache_size_in_the_environment(tiny_model_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "MLX_PROMPT_CACHE_ENTRIES": "lots"}
    result = run_command("--model", str(tiny_model_path), env=env)
    assert result.returncode != 0
    assert "MLX_PROMPT_CACHE_ENTRIES" in result.stderr


def test_unloading_the_model_drops_its_cached_prefixes(lone_server: ServerProcess) -> None:
    with lone_server.client() as http:
        body = {
            "model": MODEL_NAME,
            "prompt": "Once upon a time",
            "stream": False,
            "keep_alive": 0,
            "options": {"num_predict": 16, "temperature": 0},
        }
        context = http.post("/api/generate", json=body).json()["context"]
        deadline = time.monotonic() + 10
        while http.get("/api/ps").json()["models"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert http.get("/api/ps").json()["models"] == []
    _, usage = complete(lone_server, [*context, 5, 6])
    assert cached(usage) == 0
