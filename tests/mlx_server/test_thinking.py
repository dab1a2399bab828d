"""Reasoning split out of a thinking model's answers, `think: false`, and model capabilities."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlx_server.thinking import ThinkingSplitter

from .conftest import MODEL_NAME, REPO_ROOT, ServerProcess, start_server

THINKER = "tiny-think"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
# The thinking model's generation prompt opens the block (scripts/make_tiny_model.py).
RENDERED = "<s><|user|>\nhi<|end|>\n<|assistant|>\n<think>\n"


@pytest.fixture(scope="module")
def servers(
    tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server with the thinking model beside the plain one."""
    built = subprocess.run(
        [sys.executable, "scripts/make_tiny_model.py", "--size", "think"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    think_path = built.stdout.strip().splitlines()[-1]
    log = tmp_path_factory.mktemp("thinking") / "log"
    running = start_server(["--model", str(tiny_model_path), "--model", think_path], log)
    yield running
    running.stop()


def raw_answer(server: ServerProcess, seed: int) -> str:
    """The same sampled answer as text, markers included (a raw completion of the prompt)."""
    body = {"model": THINKER, "prompt": RENDERED, "max_tokens": 60, "seed": seed}
    answer = httpx.post(f"{server.base_url}/v1/completions", json=body, timeout=60).json()
    text: str = answer["choices"][0]["text"]
    return text


def test_ollama_splits_the_reasoning_from_the_answer(servers: ServerProcess) -> None:
    client = ollama.Client(host=servers.base_url)
    both = 0
    for seed in range(8):
        answer = client.chat(
            model=THINKER,
            messages=MESSAGES,
            options={"seed": seed, "temperature": 1, "num_predict": 60},
        )
        raw = raw_answer(servers, seed)
        thinking, _, content = raw.partition("</think>")
        assert (answer.message.thinking or "") == thinking.lstrip()
        assert answer.message.content == content.lstrip()
        both += bool(answer.message.thinking and answer.message.content)
    assert both  # some answers left their reasoning: the split was exercised


def test_openai_returns_reasoning_content_whole_and_streamed(servers: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{servers.base_url}/v1", api_key="unused")
    for seed in (3, 4):
        answer = client.chat.completions.create(
            model=THINKER, messages=MESSAGES, seed=seed, max_tokens=60
        )
        message = answer.choices[0].message.model_dump()
        thinking, _, content = raw_answer(servers, seed).partition("</think>")
        assert message["reasoning_content"] == thinking.lstrip()
        assert message["content"] == content.lstrip()
        streamed: dict[str, str] = {"reasoning_content": "", "content": ""}
        for chunk in client.chat.completions.create(
            model=THINKER, messages=MESSAGES, seed=seed, max_tokens=60, stream=True
        ):
            delta = chunk.choices[0].delta.model_dump() if chunk.choices else {}
            for key in streamed:
                streamed[key] += delta.get(key) or ""
        assert streamed == {
            "reasoning_content": message["reasoning_content"],
            "content": message["content"],
        }


def test_think_false_asks_the_template_not_to_think(servers: ServerProcess) -> None:
    client = ollama.Client(host=servers.base_url)
    thinking = client.chat(model=THINKER, messages=MESSAGES, options={"num_predict": 8})
    plain = client.chat(model=THINKER, messages=MESSAGES, think=False, options={"num_predict": 8})
    # The template closes the block in the prompt: `<think>\n\n</think>\n\n`.
    assert (plain.prompt_eval_count or 0) > (thinking.prompt_eval_count or 0)
    assert plain.message.thinking is None
    generated = client.generate(model=THINKER, prompt="hi", think=True, options={"seed": 4})
    assert generated.thinking or generated.response


def test_think_is_refused_for_a_model_that_cannot_think(servers: ServerProcess) -> None:
    client = ollama.Client(host=servers.base_url)
    with pytest.raises(ollama.ResponseError, match="think") as refused:
        client.chat(model=MODEL_NAME, messages=MESSAGES, think=True)
    assert refused.value.status_code == 400
    bad = httpx.post(
        f"{servers.base_url}/api/chat",
        json={"model": THINKER, "messages": MESSAGES, "think": "lots"},
    )
    assert bad.status_code == 400 and "'think'" in bad.json()["error"]
    plain = client.chat(
        model=MODEL_NAME, messages=MESSAGES, think=False, options={"num_predict": 2}
    )
    assert plain.done


def test_capabilities_are_listed_in_both_protocols(servers: ServerProcess) -> None:
    client = ollama.Client(host=servers.base_url)
    assert client.show(THINKER).capabilities == ["completion", "tools", "embedding", "thinking"]
    assert client.show(MODEL_NAME).capabilities == ["completion", "tools", "embedding"]
    cards = httpx.get(f"{servers.base_url}/v1/models").json()["data"]
    assert {c["id"]: c["capabilities"] for c in cards} == {
        MODEL_NAME: ["completion", "tools", "embedding"],
        THINKER: ["completion", "tools", "embedding", "thinking"],
    }


TEXTS = st.lists(
    st.sampled_from(["<think>", "</think>", "<th", "ink>", "</th", " ", "\n", "a", "b c"]),
    max_size=10,
)


@given(TEXTS, st.integers(min_value=1, max_value=6), st.booleans())
def test_the_split_does_not_depend_on_how_text_arrives(
    parts: list[str], size: int, inside: bool
) -> None:
    text = "".join(parts)

    def split(pieces: list[str]) -> tuple[str, str]:
        splitter = ThinkingSplitter("<think>", "</think>", inside=inside)
        thinking = content = ""
        for piece in pieces:
            t, c = splitter.feed(piece)
            thinking, content = thinking + t, content + c
        t, c = splitter.finish()
        return thinking + t, content + c

    whole = split([text])
    assert split([text[i : i + size] for i in range(0, len(text), size)]) == whole
    assert "</think>" not in whole[0]
